"""PyTorch models: a TorchScript file, or an entrypoint returning an ``nn.Module``.

Torch modules do not declare their inputs, so the model options name them::

    model:
      runtime: torch
      path: models/cnn.pt
      options: {inputs: {x: {dtype: float32, shape: [1, 8, 8]}}, outputs: [logits]}

Inputs are passed positionally in the order given; a module returning a tuple has its
outputs named in order, one returning a dict keeps its keys. Without options the model
takes one float32 input ``input`` and returns one output ``output``. As for ONNX models,
``options: {intra_op_threads: N}`` caps the threads one model call uses (several agents
sharing few cores want 1).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from streamcompose.errors import ModelError
from streamcompose.runtimes.base import import_entrypoint
from streamcompose.runtimes.tensor import TensorInput, TensorRuntime, numpy_dtype
from streamcompose.topology.model import ModelSpec


def _declared_inputs(spec: ModelSpec) -> tuple[TensorInput, ...]:
    declared = spec.options.get("inputs") or {"input": {"dtype": "float32"}}
    return tuple(
        TensorInput(name=name, field=spec.input_map.get(name, name),
                    dtype=numpy_dtype((info or {}).get("dtype", "float32")),
                    shape=tuple((info or {})["shape"]) if (info or {}).get("shape") else None)
        for name, info in declared.items())


def load_torchscript(path: str | Path, map_location: object = "cpu") -> object:
    """Load a TorchScript file. torch 2.15 deprecates TorchScript in favour of
    ``torch.export`` and warns on every load; those files are still what users have.

    >>> import torch, tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "m.pt"
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     torch.jit.save(torch.jit.script(torch.nn.Identity()), str(f))
    >>> load_torchscript(f)(torch.ones(2)).tolist()
    [1.0, 1.0]
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")
        return torch.jit.load(str(path), map_location=map_location)


class TorchRuntime(TensorRuntime):
    """A torch module run under ``torch.inference_mode`` on the CPU or a CUDA device."""

    def __init__(self, spec: ModelSpec, base_dir: Path, agent: str | None = None) -> None:
        super().__init__(spec, agent)
        import torch

        self.torch = torch
        threads = spec.options.get("intra_op_threads")
        if threads:  # one model per worker process, so the process-wide setting is ours
            torch.set_num_threads(int(threads))
        if spec.device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {spec.device!r} asked for, but torch sees no CUDA "
                             "device", agent=agent, model=str(spec.path or spec.entrypoint))
        self.device = torch.device(spec.device)
        try:
            if spec.path is not None:
                module = load_torchscript(spec.path, self.device)
            else:
                module = import_entrypoint(spec.entrypoint or "", base_dir)(
                    **spec.options.get("kwargs", {}))
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"cannot load torch model: {exc}", agent=agent,
                             model=str(spec.path or spec.entrypoint)) from exc
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"entrypoint {spec.entrypoint!r} returned "
                             f"{type(module).__name__}, not a torch.nn.Module", agent=agent)
        self.module = module.to(self.device).eval()
        self.tensor_inputs = _declared_inputs(spec)
        self.output_names = tuple(spec.options.get("outputs") or ("output",))
        self.output_fields = tuple(spec.output_map.get(n, n) for n in self.output_names)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])).to(self.device)
                for s in self.tensor_inputs]
        with torch.inference_mode():
            out = self.module(*args)
        if isinstance(out, dict):
            named = out
        else:
            values = out if isinstance(out, tuple | list) else (out,)
            if len(values) != len(self.output_names):
                raise ModelError(f"the module returned {len(values)} outputs but options name "
                                 f"{len(self.output_names)}: {', '.join(self.output_names)}",
                                 agent=self.agent)
            named = dict(zip(self.output_names, values, strict=True))
        return {k: v.detach().cpu().numpy() for k, v in named.items()}
