"""The Open Inference Protocol (KServe V2, Triton HTTP): its JSON, tensors, model names and the two ways this
server answers it (images in, predictions out; or the model's raw tensors), over the same core as `/infer/*`.
"""
