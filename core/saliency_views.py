"""Single-output "view" models of one of our models, shaped the way tf-keras-vis needs them (used by
core.saliency's Explainer, in the saliency worker).

Our models output a dict; tf-keras-vis wants one score per model output, so each head gets a view
(`keras.Model(inputs, head_output)`) whose sigmoid/softmax output is linear: a saturated output has vanishing
gradients. Grad-CAM taps a feature map through `layer.output`, which for a layer inside a nested model (ResNet-50's
backbone) belongs to the nested graph, not ours; `flattened_view` re-wires the view as pre-backbone → lower
backbone → tap → upper backbone → heads, so the tap is a top-level layer.

Keras and tf-keras-vis are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

CAM_TAP = "saliency_cam_tap"


def linear_view(model, head: str):
    """A single-output model for one head whose sigmoid/softmax output is linear. The output layer is copied
    first and tf-keras-vis' ReplaceToLinear switches the copy: ReplaceToLinear mutates layers in place, and
    the library's own way around that (cloning the model) takes seconds for ResNet-50; the rest of the graph
    is shared with the caller's model, read-only."""
    import keras
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    layer = model.get_layer(head)
    if head == "age":  # already linear (a Dense unit, or the expectation over the distribution head's softmax)
        return keras.Model(model.inputs, [layer.output], name=f"{head}_view")
    copy = layer.__class__.from_config(layer.get_config())
    output = copy(layer.input)
    copy.set_weights(layer.get_weights())
    view = keras.Model(model.inputs, [output], name=f"{head}_view")
    ReplaceToLinear()(view)
    return view


def feature_maps(view) -> list[tuple[object, object | None]]:
    """(layer, nested model or None) for every layer with a spatial output, input side first; the layers of a
    nested backbone are listed in its place."""
    import keras
    found = []
    for layer in view.layers:
        if isinstance(layer, keras.Model):
            found += [(inner, layer) for inner in layer.layers if _is_spatial(inner)]
        elif _is_spatial(layer):
            found.append((layer, None))
    return found


def _is_spatial(layer) -> bool:
    import keras
    if isinstance(layer, keras.layers.InputLayer):
        return False
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def is_rectified(layer) -> bool:
    """A feature map after a ReLU: the maps Grad-CAM was designed for (block outputs, activated convolutions)."""
    import keras
    if isinstance(layer, keras.layers.ReLU):
        return True
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    return isinstance(layer, (keras.layers.Activation, keras.layers.Conv2D)) and activation == "relu"


def map_side(layer) -> int:
    return int(layer.output.shape[1] or 0)


def flattened_view(view, owner, layer):
    """`view` re-wired so `layer`, which sits inside the nested model `owner`, feeds a top-level Identity layer:
    inputs → (layers before owner) → owner's lower part → tap → owner's upper part → (layers after) → head."""
    import keras

    from core.saliency import SaliencyError  # here, not at the top: core.saliency imports this module
    nodes = owner._inbound_nodes  # Keras keeps no public handle on where a nested model is called
    if len(nodes) != 1:
        raise SaliencyError(f"{owner.name} is used {len(nodes)} times in the model; cannot place a CAM in it.")
    outer_in, outer_out = nodes[0].input_tensors[0], nodes[0].output_tensors[0]
    try:
        lower = keras.Model(owner.inputs, layer.output)
        upper = None if layer.output is owner.outputs[0] else keras.Model(layer.output, owner.outputs[0])
        before = None if outer_in is view.inputs[0] else keras.Model(view.inputs, outer_in)
        after = keras.Model(outer_out, view.outputs[0])
    except ValueError as error:  # the graph beyond `layer` also needs tensors from before it (a skip connection)
        raise SaliencyError(f"Layer {layer.name} cannot be isolated inside {owner.name}: choose a block output "
                            f"(a layer whose name ends in _out).") from error
    image = keras.Input(view.input_shape[1:], name="image")
    tap_layer = keras.layers.Identity(name=CAM_TAP)
    tap = tap_layer(lower(before(image) if before else image))
    head = after(upper(tap) if upper else tap)
    return keras.Model([image], [head], name=f"{view.name}_flat"), tap_layer
