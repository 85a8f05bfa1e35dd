"""Builds the optional native parts: the wire backend (decoders/_native.c, generated from the
schema by `python -m decoders.native_gen`) and batched datagram syscalls (mdcommon/_batch_io.c). Without a C compiler the install still succeeds, with a
warning, and the struct codecs do the work (decoders.BACKEND says which is active)."""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers: the pure-Python backend remains
            self.warn(f"the native backend was not built ({exc}); the pure-Python codecs will be used")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self.warn(f"the native backend {ext.name} was not built ({exc}); the pure-Python codecs will be used")


setup(
    ext_modules=[
        Extension("decoders._native", ["decoders/_native.c"], depends=["decoders/_native_lane.c", "decoders/_native_seal.c", "decoders/native_api.h", "decoders/pyobj_reuse.h"], extra_compile_args=["-O2"], optional=True),
        Extension("mdcommon._batch_io", ["mdcommon/_batch_io.c"], extra_compile_args=["-O2"], optional=True),  # recvmmsg/sendmmsg
        Extension("tickerplant._synthetic", ["tickerplant/_synthetic.c"], depends=["decoders/pyobj_reuse.h"], extra_compile_args=["-O2"], optional=True),  # the synthetic market
        Extension("mdcommon._replica", ["mdcommon/_replica.c"], extra_compile_args=["-O2"], optional=True),  # Image.apply_many
        Extension("mdcommon._compact", ["mdcommon/_compact.c"], depends=["decoders/native_api.h"], extra_compile_args=["-O2"], optional=True),  # CompactImage
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
