"""A local stand-in for RunPod Serverless' hosted queue API (`/v2/{endpoint_id}/...`).

It follows the hosted (cloud) contract, not the local server that runpod-python starts with
`--rp_serve_api`, which differs from the cloud in paths, auth and lifecycle. Pieces:

- `config.SimulatorConfig`: every knob (pool, timing, limits, retention, faults), live-mutable.
- `app.create_app(config)`: the ASGI app; `server.SimulatorServer` runs it in a thread on
  127.0.0.1 for tests, `server.serve` runs it in the foreground for the CLI.
- Unauthenticated extras: `GET /images/{id}.png` (generated images, like a public bucket) and
  `/_sim/config` (GET, PATCH), `/_sim/counters`, `/_sim/jobs`, `POST /_sim/reset`.
- The simulated worker reads worker-sdxl style input; `input.sim_output_shape` picks one of
  `config.OUTPUT_SHAPES` for a single job, overriding the `output_shape` knob.
"""
