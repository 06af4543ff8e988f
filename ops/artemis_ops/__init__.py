"""The operator commands of `artemis-admin` (migrate, reconcile, backfill, driftreport,
gcreport, preflight): they run the domain package's jobs against whatever the environment
names — a real deployment's database and bucket, or the local system's — so they live apart
from the local runtime and never import it."""
