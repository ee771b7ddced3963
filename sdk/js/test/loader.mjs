// Module resolution hook for the SDK's tests (see register.mjs).
const PREFIX = 'nexo:connector/';

/**
 * @param {string} specifier
 * @param {object} context
 * @param {Function} next
 */
export async function resolve(specifier, context, next) {
  if (specifier.startsWith(PREFIX)) {
    const [name, version] = specifier.slice(PREFIX.length).split('@');
    if (version !== '1.1.0') {
      throw new Error(`the SDK imports ${specifier}; the fakes serve only 1.1.0`);
    }
    return { url: new URL(`./fake/${name}.mjs`, import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
