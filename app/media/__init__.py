"""Where finished images are kept, so results outlive RunPod's and the workers' links."""
