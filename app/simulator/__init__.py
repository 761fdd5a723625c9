"""A local stand-in for RunPod Serverless' hosted queue API (`/v2/{endpoint_id}/...`).

It follows the hosted (cloud) contract, not the local server that runpod-python starts with
`--rp_serve_api`, which differs from the cloud in paths, auth and lifecycle. Pieces:

- `config.SimulatorConfig`: every knob (pool, timing, limits, retention, faults), live-mutable.
- `endpoints.Endpoints`: endpoints configured with their own overrides of the per-endpoint
  knobs (`config.ENDPOINT_KNOBS`, throttled and unhealthy among them) and their own workers;
  any other endpoint id runs with the global knobs on one shared pool.
- `app.create_app(config, endpoints)`: the ASGI app; `server.SimulatorServer` runs it in a
  thread on 127.0.0.1 for tests, `server.serve` runs it in the foreground for the CLI.
- Unauthenticated extras: `GET /images/{id}.png` (generated images, like a public bucket) and
  `/_sim/config` (GET, PATCH), `/_sim/endpoints[/{id}]` (GET, PUT, PATCH, DELETE),
  `/_sim/counters`, `/_sim/jobs`, `/_sim/jobs/by-input`, `POST /_sim/reset`.
  docs/SIMULATOR.md describes them.
- The simulated worker reads worker-sdxl style input; `input.sim_output_shape` picks one of
  `config.OUTPUT_SHAPES` for a single job, overriding the `output_shape` knob.
"""
