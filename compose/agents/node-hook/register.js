'use strict';
// obs-stack hook for Node.js auto-instrumentation.
//
// `obs-stack inject` (and init) load this file with `node --require` instead of the agent
// image's own `autoinstrumentation.js`; it is embedded in the obs-stack binary and written into
// the agent volume under obs-stack-guard/, so it works with the unmodified Operator images.
//
// It runs the image's own entry point unchanged, after one optional adjustment:
// OBS_STACK_LAYER_SPANS=off (the prod profile) asks the Express instrumentation for no span per
// middleware, router and handler layer. Express still reports the matched route to the HTTP
// server span (and so to http.server.request.duration) before it checks which layers to skip,
// so RED metrics per route and the server span's name stay exact; what goes is the 3-6
// nested spans a sampled trace carries per request (bench/agent-ab.sh: 1 span instead of
// 4 on the fixture; the CPU per request did not change measurably).
//
// Anything unexpected leaves the agent as the image ships it, with one line on stderr.
(function obsStackNodeHook() {
  const path = require('path');
  const agent = path.resolve(__dirname, '..');
  const say = (msg) => {
    try {
      process.stderr.write('[obs-stack node hook] ' + msg + '\n');
    } catch (_) {
      // stderr closed: nothing to tell
    }
  };
  const off = ['off', 'false', '0', 'no'].includes(String(process.env.OBS_STACK_LAYER_SPANS || '').toLowerCase());
  if (off) {
    // The options the metapackage passes to each instrumentation, merged under the user's own.
    const lean = {
      '@opentelemetry/instrumentation-express': {
        ignoreLayersType: ['middleware', 'router', 'request_handler'],
      },
    };
    try {
      // register.js (and the Operator's compiled entry) read this export at call time.
      const utils = require(path.join(agent, 'node_modules/@opentelemetry/auto-instrumentations-node/build/src/utils.js'));
      const original = utils.getNodeAutoInstrumentations;
      if (typeof original !== 'function') throw new Error('getNodeAutoInstrumentations not found');
      utils.getNodeAutoInstrumentations = function getNodeAutoInstrumentations(inputConfigs) {
        const merged = Object.assign({}, inputConfigs);
        for (const [name, config] of Object.entries(lean)) {
          merged[name] = Object.assign({}, config, merged[name]);
        }
        return original.call(this, merged);
      };
    } catch (e) {
      say('OBS_STACK_LAYER_SPANS=off not applied, layer spans stay on: ' + (e && e.message));
    }
  }
  require(path.join(agent, 'autoinstrumentation.js'));
})();
