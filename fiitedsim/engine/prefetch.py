"""A cache-prefetch hint for Numba kernels (LLVM's llvm.prefetch).

Replay is bound by cache misses: each lookup walks tracker bucket -> row
state -> one index bucket per resident chunk, a chain of dependent loads. The
record loop issues these loads for lookups a few positions ahead, so they are
in flight while the current lookup is processed. A prefetch never changes
results; it only moves memory traffic earlier.
"""
import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def _prefetch(typingctx, arr, i, j):
    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        indices = [args[1]] if aryty.ndim == 1 else [args[1], args[2]]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, indices, wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        # read access, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(arr, i, j), codegen


@numba.njit(cache=True, inline="always")
def prefetch(arr, i):
    """Hint that arr[i] (1-D) or row arr[i, :] (2-D) will be read soon."""
    _prefetch(arr, i, 0)


@numba.njit(cache=True, inline="always")
def prefetch2(arr, i, j):
    """Hint that arr[i, j] (2-D) will be read soon."""
    _prefetch(arr, i, j)
