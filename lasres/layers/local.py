"""Locally connected layers (Lasagne's ``lasagne.layers.local``)."""
import pytensor.tensor as pt

from .. import init, nonlinearities
from .conv import BaseConvLayer, Conv2DLayer

__all__ = ["LocallyConnected2DLayer"]


class LocallyConnected2DLayer(Conv2DLayer):
    """2D locally connected layer: a 2D convolution without weight sharing
    (each output position has its own filters), then a bias and a
    nonlinearity.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        Input of shape ``(batch, channels, rows, columns)``; all but the
        batch size must be known.
    num_filters : int
    filter_size : int or pair of int
    stride : 1 or (1, 1)
        Only unit stride is supported.
    pad : 'same'
        Only 'same' padding is supported.
    untie_biases : bool
    W : initializer, array or shared variable
        Shape ``(num_filters, channels, fh, fw, out_rows, out_columns)``, or
        ``(num_filters, fh, fw, out_rows, out_columns)`` if ``channelwise``.
    b : initializer, array, shared variable or None
    nonlinearity : callable or None
    flip_filters : bool (default True)
        True: convolution; False: correlation.
    channelwise : bool (default False)
        True: output channel ``k`` sees input channel ``k`` only (needs
        ``num_filters`` equal to the number of input channels).
    """

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad="same",
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters=True, channelwise=False,
                 **kwargs):
        self.channelwise = channelwise
        super().__init__(incoming, num_filters, filter_size, stride=stride, pad=pad,
                         untie_biases=untie_biases, W=W, b=b, nonlinearity=nonlinearity,
                         flip_filters=flip_filters, **kwargs)
        if self.stride != (1, 1):
            raise NotImplementedError(
                f"LocallyConnected2DLayer requires stride=1 / (1, 1), but got {stride!r}.")
        if self.pad != "same":
            raise NotImplementedError(
                f"LocallyConnected2DLayer requires pad='same', but got {pad!r}.")

    def get_W_shape(self):
        if any(s is None for s in self.input_shape[1:]):
            raise ValueError(f"A LocallyConnected2DLayer requires a fixed input shape (except "
                             f"for the batch size). Got {self.input_shape!r}.")
        num_input_channels = self.input_shape[1]
        output_shape = self.get_output_shape_for(self.input_shape)
        if self.channelwise:
            if self.num_filters != num_input_channels:
                raise ValueError(f"num_filters and the number of input channels should match "
                                 f"when channelwise is true, but got num_filters="
                                 f"{self.num_filters!r} and {num_input_channels} input "
                                 f"channels")
            return (self.num_filters,) + self.filter_size + output_shape[-2:]
        return (self.num_filters, num_input_channels) + self.filter_size + output_shape[-2:]

    def get_output_for(self, input, **kwargs):
        return BaseConvLayer.get_output_for(self, input, **kwargs)

    def _product(self, input_part, w_part):
        if self.channelwise:
            return input_part * w_part
        return (input_part[:, None] * w_part).sum(axis=-3)

    def convolve(self, input, **kwargs):
        rows, cols = self.output_shape[-2:]
        fh, fw = self.filter_size

        def tap(i, j):
            """Weights index, input slices and output slices of tap (i, j)."""
            wi = -i - 1 if self.flip_filters else i
            wj = -j - 1 if self.flip_filters else j
            di, dj = i - fh // 2, j - fw // 2
            in_r = slice(max(di, 0), min(di + rows, rows))
            out_r = slice(max(-di, 0), min(-di + rows, rows))
            in_c = slice(max(dj, 0), min(dj + cols, cols))
            out_c = slice(max(-dj, 0), min(-dj + cols, cols))
            return wi, wj, in_r, in_c, out_r, out_c

        def weights(wi, wj, out_r, out_c):
            if self.channelwise:
                return self.W[:, wi, wj, out_r, out_c]
            return self.W[:, :, wi, wj, out_r, out_c]

        # the centre tap covers every output position
        wi, wj, _, _, _, _ = tap(fh // 2, fw // 2)
        conved = self._product(input, weights(wi, wj, slice(None), slice(None)))
        for i in range(fh):
            for j in range(fw):
                if i == fh // 2 and j == fw // 2:
                    continue
                wi, wj, in_r, in_c, out_r, out_c = tap(i, j)
                inc = self._product(input[:, :, in_r, in_c], weights(wi, wj, out_r, out_c))
                conved = pt.inc_subtensor(conved[:, :, out_r, out_c], inc)
        return conved
