// {{name}}: a Nexo mapper in JavaScript. It copies each record and renames
// one field (`name` → `full_name` unless the config says otherwise); a
// record whose payload is not a JSON object is refused alone (the SDK does
// that before `map` runs), the batch goes on.

import { mapper } from 'nexo-sdk';

export const mapping = mapper({
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      from: { type: 'string', default: 'name', description: 'The field to rename' },
      to: { type: 'string', default: 'full_name', description: 'Its new name' },
    },
  },
  map(record, config) {
    if (record.operation === 'delete') return { payload: {} };
    const { [config.from]: value, ...rest } = record.data;
    const payload = value === undefined ? rest : { ...rest, [config.to]: value };
    return { payload };
  },
});
