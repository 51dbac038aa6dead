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

On ``device: cuda[:N]`` the module is moved to GPU N and each call runs on the runtime's
own CUDA stream: the batch is copied into pinned host memory and on to the GPU without
blocking, the outputs come back into pinned memory the same way, and the runtime waits
only when it needs them. The calls of one batch (one per input shape) are all queued
before the first is waited for, so the copies of one overlap the model running the
previous. On the CPU the very same code runs with no stream and no copies. Without a
usable CUDA device the model does not load unless its spec says ``fallback: cpu``.

Validation (:func:`describe`) does not import torch: it reads a TorchScript file as the
zip archive it is. ``<folder>/data.pkl`` pickles the root module, whose class is the
first global the pickle names, and ``<folder>/code/`` holds the TorchScript source of
every class, in Python syntax; the root class's ``forward`` must take as many inputs as
the options declare. Nothing is unpickled and no code is run: the pickle's opcodes are
listed and the source is parsed.
"""

from __future__ import annotations

import ast
import contextlib
import pickletools
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from streamcompose.errors import ModelError
from streamcompose.runtimes.base import import_callable, import_entrypoint
from streamcompose.runtimes.device import device_index, is_cuda, resolve_device
from streamcompose.runtimes.tensor import TensorInput, TensorRuntime, numpy_dtype
from streamcompose.topology.fieldflow import ModelInfo
from streamcompose.topology.model import ModelSpec


def _declared_inputs(spec: ModelSpec) -> tuple[TensorInput, ...]:
    declared = spec.options.get("inputs") or {"input": {"dtype": "float32"}}
    return tuple(
        TensorInput(name=name, field=spec.input_map.get(name, name),
                    dtype=numpy_dtype((info or {}).get("dtype", "float32")),
                    shape=tuple((info or {})["shape"]) if (info or {}).get("shape") else None)
        for name, info in declared.items())


def _output_names(spec: ModelSpec) -> tuple[str, ...]:
    return tuple(spec.options.get("outputs") or ("output",))


def _output_fields(spec: ModelSpec) -> tuple[str, ...]:
    """The payload fields the outputs kept (``outputs``) are stored as (``output_map``)."""
    return tuple(spec.output_map.get(n, n) for n in _output_names(spec)
                 if spec.outputs is None or n in spec.outputs)


@contextmanager
def torchscript_allowed() -> Iterator[None]:
    """Silence torch's notices that TorchScript is deprecated in favour of ``torch.export``
    (a ``DeprecationWarning`` in torch 2.11, a ``FutureWarning`` in 2.15, on every script,
    save and load): TorchScript files are still what users have.

    >>> import torch
    >>> with torchscript_allowed():
    ...     scripted = torch.jit.script(torch.nn.Identity())
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated",
                                category=Warning)
        yield


def load_torchscript(path: str | Path, map_location: object = "cpu") -> object:
    """Load a TorchScript file (:func:`torchscript_allowed`).

    >>> import torch, tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "m.pt"
    >>> with torchscript_allowed():
    ...     torch.jit.save(torch.jit.script(torch.nn.Identity()), str(f))
    >>> load_torchscript(f)(torch.ones(2)).tolist()
    [1.0, 1.0]
    """
    import torch

    with torchscript_allowed():
        return torch.jit.load(str(path), map_location=map_location)


def _root_class(pickled: bytes) -> tuple[str, str] | None:
    """The module and name of the first class a pickle names (protocol 2, as torch
    writes them), or None."""
    for opcode, arg, _ in pickletools.genops(pickled):
        if opcode.name == "GLOBAL":
            module, _, name = str(arg).partition(" ")
            return module, name
    return None


def _forward(source: str, class_name: str) -> tuple[tuple[str, ...], int] | None:
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "forward":
                    args = [a.arg for a in item.args.args[1:]]
                    return tuple(args), len(args) - len(item.args.defaults)
    return None


def forward_arguments(path: Path) -> tuple[tuple[str, ...], int] | None:
    """The argument names of the root module's ``forward`` in a TorchScript file
    (``self`` left out) and how many of them are required; None when the archive's code
    does not say. Raises :class:`~streamcompose.errors.ModelError` when the file is not
    a TorchScript archive at all.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.pt"
    >>> with zipfile.ZipFile(path, "w") as z:
    ...     z.writestr("m/data.pkl", b"\\x80\\x02c__torch__.demo\\nNet\\nq\\x00)\\x81.")
    ...     z.writestr("m/code/__torch__/demo.py", "class Net(Module):\\n"
    ...                "  def forward(self: __torch__.demo.Net, x: Tensor, k: int=1):\\n"
    ...                "    return x\\n")
    >>> forward_arguments(path)
    (('x', 'k'), 1)
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickle_name = next((n for n in names if n.endswith("/data.pkl")
                                and n.count("/") == 1), None)
            if pickle_name is None:
                raise ModelError(f"{path} is not a TorchScript file: its archive has no "
                                 "data.pkl (a state dict or a torch.export file?)")
            root = _root_class(archive.read(pickle_name))
            if root is None:
                return None
            folder = pickle_name.partition("/")[0]
            code = f"{folder}/code/{root[0].replace('.', '/')}.py"
            if code not in names:
                return None
            source = archive.read(code).decode("utf-8")
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path} is not a TorchScript file: {exc}") from exc
    try:
        return _forward(source, root[1])
    except SyntaxError:
        return None


def cuda_missing(torch: Any, device: str) -> str | None:
    """What this machine lacks for ``device`` (None when it has it, or for the CPU)."""
    if not is_cuda(device):
        return None
    if not torch.cuda.is_available():
        return (f"torch sees no CUDA device (torch {torch.__version__}, built for CUDA "
                f"{torch.version.cuda or 'none: a CPU-only build'})")
    count = torch.cuda.device_count()
    return None if device_index(device) < count else f"torch sees {count} CUDA device(s)"


class TorchRuntime(TensorRuntime):
    """A torch module run under ``torch.inference_mode`` on the CPU or a CUDA device."""

    def __init__(self, spec: ModelSpec, base_dir: Path, agent: str | None = None) -> None:
        super().__init__(spec, agent)
        import torch

        self.torch = torch
        threads = spec.options.get("intra_op_threads")
        self.threads = int(threads) if threads else None
        self._own_threads()
        self.device = torch.device(resolve_device(spec, cuda_missing(torch, spec.device),
                                                  agent))
        self.cuda = self.device.type == "cuda"
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
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        if self.stream is not None:  # the weights' copies were queued on the default stream
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
        self.tensor_inputs = _declared_inputs(spec)
        self.output_names = _output_names(spec)
        self.output_fields = _output_fields(spec)

    def _own_threads(self) -> None:
        """Apply ``intra_op_threads`` on the calling thread before each call: under OpenMP,
        torch's thread count is a setting of each thread, a worker runs its model on its
        model thread or, for a quick step, on its event loop, and a co-located group's
        members, each with its own count, share those threads."""
        if self.threads is not None and self.torch.get_num_threads() != self.threads:
            self.torch.set_num_threads(self.threads)

    def _to_device(self, array: np.ndarray) -> Any:
        tensor = self.torch.from_numpy(np.ascontiguousarray(array))
        if not self.cuda:
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _named(self, out: Any) -> dict[str, Any]:
        if isinstance(out, dict):
            return out
        values = out if isinstance(out, tuple | list) else (out,)
        if len(values) != len(self.output_names):
            raise ModelError(f"the module returned {len(values)} outputs but options name "
                             f"{len(self.output_names)}: {', '.join(self.output_names)}",
                             agent=self.agent)
        return dict(zip(self.output_names, values, strict=True))

    def _submit(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, Any], Any]:
        """Queue the copies in, the model call and the copies out on the runtime's
        stream; on the CPU the call runs at once."""
        torch = self.torch
        self._own_threads()
        on_stream = (torch.cuda.stream(self.stream) if self.stream is not None
                     else contextlib.nullcontext())
        with torch.inference_mode(), on_stream:
            args = [self._to_device(feeds[s.name]) for s in self.tensor_inputs]
            outputs = {k: v.detach().to("cpu", non_blocking=self.cuda)
                       for k, v in self._named(self.module(*args)).items()}
            done = torch.cuda.Event() if self.cuda else None
            if done is not None:
                done.record(self.stream)
        return outputs, done

    def _collect(self, submitted: tuple[dict[str, Any], Any]) -> dict[str, np.ndarray]:
        outputs, done = submitted
        if done is not None:
            done.synchronize()
        return {k: v.numpy() for k, v in outputs.items()}

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._collect(self._submit(feeds))


def describe(spec: ModelSpec, base_dir: Path) -> ModelInfo:
    """The fields a torch model reads and writes, as its options declare them, without
    importing torch: a TorchScript file's ``forward`` must take as many inputs as
    ``options.inputs`` declares; an entrypoint is imported, never called."""
    inputs = _declared_inputs(spec)
    if spec.path is None:
        import_callable(spec.entrypoint or "", base_dir)
    elif (found := forward_arguments(spec.path)) is not None:
        names, required = found
        if not required <= len(inputs) <= len(names):
            raise ModelError(f"the TorchScript module's forward takes ({', '.join(names)}), "
                             f"{required} required, but the model options declare "
                             f"{len(inputs)} input(s): {', '.join(i.name for i in inputs)}")
    return ModelInfo(tuple(i.field for i in inputs), _output_fields(spec))


def load(spec: ModelSpec, base_dir: Path, agent: str | None) -> TorchRuntime:
    """The runtime of an agent's torch model, on the device it names."""
    return TorchRuntime(spec, base_dir, agent)
