"""Trained models read back from disk (`load_model`); `learn_batch.save_model` writes them."""

import json
import os

import equinox as eqx
import jax.random as jr


def load_model(path):
    """A model saved by `jaxmem train` (`DIR/models/*.eqx`): returns `(model, header)`, the header
    a dict with the model's class, the training settings and configuration.

    Raises `ValueError` naming the file when it is not such a model file.

    ```python
    import jaxmem
    # model, header = jaxmem.load_model("runs/train/models/exp_beta=0.5_m=8_seed=0_lr=0.01.eqx")
    ```
    """
    from .learn_batch import FORMAT, build_model
    from .training import TrainSettings

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            first = f.readline()
            header = json.loads(first.decode())
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError
            settings = TrainSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in header["settings"].items()})
            cfg = header["config"]
            like = build_model(settings, int(cfg["width"]), int(header["max_width"]), jr.key(0))
            if type(like).__name__ != header["model_class"]:
                raise ValueError
            model = eqx.tree_deserialise_leaves(f, like)
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RuntimeError, OSError) as e:
        raise ValueError(f"{path!r} is not a model file written by jaxmem train (format {FORMAT}): "
                         f"{type(e).__name__} {e}".rstrip(": ")) from None
    return model, header
