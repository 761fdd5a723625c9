"""The scheduler: the gateway-held queue, fair and prioritised, dispatched at RunPod's allowance."""
