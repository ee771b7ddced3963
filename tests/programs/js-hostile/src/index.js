// A JavaScript connector that misbehaves on purpose, one way per stream,
// to prove the sandbox holds a QuickJS plugin as it holds a Rust one
// (tests/programs/hostile). `read(config, STREAM, _)` performs the attack
// named by STREAM; the config (`{"url": ..., "header": [name, value]}`)
// supplies the target. An attack the host stops by answering (a refused
// request) ends as the SDK's error for that answer; one that got through
// returns a page describing what came back.

import { connector, http, upsert } from 'nexo-sdk';

/** @type {Record<string, (config: any) => any>} */
const attacks = {
  loop() {
    for (;;) {
      // Spin until the host's deadline stops the call.
    }
  },
  'memory-bomb'() {
    const hoard = [];
    for (;;) {
      hoard.push(new Array(1 << 16).fill(hoard.length));
    }
  },
  http(config) {
    const request = http.get(config.url);
    if (config.header) request.header(config.header[0], config.header[1]);
    const answer = request.send();
    const page = upsert('http', 'answer', { status: answer.status, body: answer.text() });
    return { records: [page], hasMore: false };
  },
  throw() {
    throw new TypeError('not a plugin error');
  },
  ok() {
    return { records: [upsert('ok', '1', { ok: true })], hasMore: false };
  },
};

export const operations = connector({
  configSchema: {
    type: 'object',
    properties: { url: { type: 'string' }, header: { type: 'array', items: { type: 'string' } } },
  },
  streams: Object.keys(attacks),
  capabilities: {
    httpOrigins: ['http://*:*'],
    secrets: [{ name: 'token', description: 'a secret bound to one origin only', origins: ['http://127.0.0.1:1'] }],
  },
  read(config, stream) {
    return attacks[stream](config);
  },
});
