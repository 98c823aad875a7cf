//! Scenario files: a test as data (plugins, properties, request, response, callout replies,
//! clock advances) in, a trace out.
