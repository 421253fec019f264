"""FakeTensorRT: a stand-in for the `tensorrt` module on machines without it (CPU tests of
engine/tensorrt_runtime.py). It fakes only TensorRT itself: its parser reads the real .onnx file (with onnx) into a
network of named tensors, its builder "serializes" what it was asked to build (file, flags, profile shapes) as
JSON, and its runtime gives that back as an engine. Everything that decides what to build, from which file, with
which flags and profile, and when a cached engine fits, is the real code under test."""

from __future__ import annotations

import importlib.machinery
import json
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import helper

FAKE_ENGINE = b"fake-tensorrt-engine:"


class FakeTensorRT:
    """Stands for the tensorrt module (the calls tensorrt_runtime.py makes). builds: the build requests so far."""

    __spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # so that importlib.util.find_spec finds it

    class ILogger:
        Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8")

    def __init__(self, version: str = "10.3.0"):
        self.__version__ = version
        self.builds: list[dict] = []
        fake = self

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags):
                return SimpleNamespace(inputs=[], outputs=[], num_inputs=0, num_outputs=0, get_input=None,
                                       get_output=None)

            def create_builder_config(self):
                return _Config()

            def create_optimization_profile(self):
                return _Profile()

            def build_serialized_network(self, network, config):
                request = {"file": network.file, "flags": sorted(config.flags), "shapes": config.profiles[0].shapes}
                fake.builds.append(request)
                return FAKE_ENGINE + json.dumps(request).encode()

        class OnnxParser:
            def __init__(self, network, logger):
                self.network, self.errors = network, []

            @property
            def num_errors(self):
                return len(self.errors)

            def get_error(self, index):
                return self.errors[index]

            def parse_from_file(self, path):
                try:
                    graph = onnx.load(path).graph
                except Exception as error:  # whatever onnx raises for a damaged file
                    self.errors.append(f"ModelImporter: failed to parse {path}: {type(error).__name__}")
                    return False
                network = self.network
                network.file = path
                network.inputs, network.outputs = [_tensor(t) for t in graph.input], [_tensor(t) for t in graph.output]
                network.num_inputs, network.num_outputs = len(network.inputs), len(network.outputs)
                network.get_input, network.get_output = network.inputs.__getitem__, network.outputs.__getitem__
                return True

        class Runtime:
            def __init__(self, logger):
                self.logger = logger

            def deserialize_cuda_engine(self, data):
                if not data.startswith(FAKE_ENGINE):
                    self.logger.log(fake.ILogger.Severity.ERROR, "IRuntime::deserializeCudaEngine: magic tag mismatch")
                    return None
                return _Engine(json.loads(data[len(FAKE_ENGINE):]))

        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime

    @staticmethod
    def nptype(dtype):
        return dtype  # the fake's tensors carry numpy dtypes


def _tensor(value_info) -> SimpleNamespace:
    """A network tensor as TensorRT's parser gives it: name, numpy dtype, shape with -1 for a named dynamic axis."""
    kind = value_info.type.tensor_type
    shape = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in kind.shape.dim]
    return SimpleNamespace(name=value_info.name, dtype=helper.tensor_dtype_to_np_dtype(kind.elem_type), shape=shape)


class _Config:
    def __init__(self):
        self.flags, self.profiles = set(), []

    def set_flag(self, flag):
        self.flags.add(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, smallest, tuned, largest):
        self.shapes[name] = [list(smallest), list(tuned), list(largest)]


class _Engine:
    """A deserialized fake engine: the build request it came from."""

    def __init__(self, request: dict):
        self.request = request

    def create_execution_context(self):
        return SimpleNamespace()

    def get_tensor_dtype(self, name):
        return np.dtype(np.float32)
