"""Use-cases: one module per concern. Services take the Runtime (dependencies) and a
RequestContext (who is asking, which request), raise ArtemisError subclasses, and return the
models of `artemis.responses` that the handler serialises (`artemis.http.json_response`).

Each module imports those models inside the function that builds the answer (and under
TYPE_CHECKING for the annotations): defining them costs about 20 ms, which the first answer
that needs them pays rather than the API's cold init (health checks and errors never do)."""
