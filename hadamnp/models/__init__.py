"""Models: the protocol every family implements, the registry, quantizers, recurrences,
losses and the model families (HadamRNN / Block-HadamRNN / dense baseline)."""
