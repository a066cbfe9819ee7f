"""bptt: exact backpropagation-through-time gradients and spectra for recurrent networks."""

__version__ = "0.2.0"
