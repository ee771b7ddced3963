// The SDK's own version and the contract it targets; build.mjs reads the
// same values from package.json and embeds them in the component.

/** Version of this SDK (package.json `version`). */
export const SDK_VERSION = '1.1.0';

/** The `nexo:connector` WIT version the SDK binds. */
export const WIT_VERSION = '1.1.0';
