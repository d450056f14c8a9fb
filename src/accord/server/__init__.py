"""The Accord server: a relay trusted for availability only (docs/threat-model.md).

- `app`: `create_app()`, the FastAPI app: middleware, error answers, the routers;
- `config`: `ServerConfig` (with its clock) and the operator token;
- `assembly`: `Services`, every service of one process, built from the config;
- `deps`: the routes' dependencies (`CurrentDevice`, `Operator`, `CurrentReviewer`...);
- `routes/`: one router per feature; each route parses, calls a service, maps the result;
- `problems`, `middleware`: errors as HTTP answers; body limits, metrics, access records;
- services, with no FastAPI in them: `messaging`, `blobs`, `franking`, `limits`, `notify`,
  `translog`, `reports`, `review`, `detection`, `access/`, `private_matching/`;
- `observability`: metrics and log formats; `run`: `accord server`; `process`: a server as a
  child process (demo, tests, benchmarks).
"""
