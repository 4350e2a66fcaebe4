"""The one custom Keras layer of the model, in a file that needs nothing but Keras 3.

export copies this file next to the float .keras model (artifacts/mcuvision_layers.py), so that
a user loads the model with plain Keras: `import mcuvision_layers` registers the layer, then
`keras.models.load_model(path)` works in safe mode. Keep it free of project imports.
"""
import keras


@keras.saving.register_keras_serializable(package="mcuvision")
class Clip(keras.layers.Layer):
    """Clip values to [min_value, max_value]; any input shape and float dtype, output the same.

    A named layer instead of a Lambda so that saved models load under safe_mode=True;
    `keras.ops.clip` converts to TFLite MINIMUM/MAXIMUM, which quantize to int8.
    """

    def __init__(self, min_value: float, max_value: float, **kwargs):
        super().__init__(**kwargs)
        self.min_value = float(min_value)
        self.max_value = float(max_value)

    def call(self, inputs):
        return keras.ops.clip(inputs, self.min_value, self.max_value)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "min_value": self.min_value, "max_value": self.max_value}
