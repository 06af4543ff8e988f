"""Use-cases: one module per concern. Services take the Runtime (dependencies) and a
RequestContext (who is asking, which request), raise ArtemisError subclasses, and return the
models of `artemis.responses` that the handler serialises (`artemis.http.json_response`)."""
