// A mapper written with nexo-sdk's mapper({...}): upper-cases the field the
// config names; a contact without email is rejected (that record alone is
// quarantined), one marked `skip` maps to nothing, one marked `split`
// becomes two records. console.log goes to the host's log.

import { Rejected, mapper } from 'nexo-sdk';

export const mapping = mapper({
  configSchema: {
    type: 'object',
    required: ['field'],
    additionalProperties: false,
    properties: { field: { type: 'string', minLength: 1 } },
  },
  map(record, config) {
    const data = record.data;
    if (data.skip) return null;
    if (typeof data.email !== 'string' || data.email === '') {
      throw new Rejected(`contact ${record.id} has no email`);
    }
    console.log('mapping', record.id);
    const value = data[config.field];
    const out = { ...data, [config.field]: typeof value === 'string' ? value.toUpperCase() : value };
    if (data.split) {
      return [
        { payload: out },
        { stream: 'notes', id: `${record.id}-note`, payload: { about: record.id } },
      ];
    }
    return { payload: out };
  },
});
