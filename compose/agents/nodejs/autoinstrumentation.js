// obs-stack Node.js agent entry point, loaded with `node --require <dir>/autoinstrumentation.js`
// (NODE_OPTIONS). Like the OpenTelemetry Operator's image, it is the metapackage's register
// hook: it starts the NodeSDK with every auto-instrumentation, configured by OTEL_* variables.
require('@opentelemetry/auto-instrumentations-node/register');
