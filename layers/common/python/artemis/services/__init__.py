"""Use-cases: one module per concern. Services take the Runtime (dependencies) and a
RequestContext (who is asking, which request), raise ArtemisError subclasses, and return plain
data that the handler serialises."""
