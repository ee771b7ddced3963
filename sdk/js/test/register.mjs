// Loaded with `node --import ./test/register.mjs --test test/`: maps the
// host's WIT imports (`nexo:connector/NAME@1.1.0`) to the fakes in
// test/fake/, so the SDK runs under Node as it does inside the component.
import { register } from 'node:module';

register('./loader.mjs', import.meta.url);
