"""KServe V2 / Open Inference Protocol over REST, with the binary tensor data extension."""
