"""HTTP layer: routes, schemas, dependencies and the one error-to-response map."""
