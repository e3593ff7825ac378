"""Which TensorFlow graph ops a SavedModel may hold and still touch nothing but its own tensors and variables.

The allowlist is of ops that compute on tensors and variables (math, neural-network,
array, control flow, variable handles): none reads or writes files, reaches the network,
runs Python (PyFunc) or loads code (a custom op library). The ops that write and read a
checkpoint (SaveV2, RestoreV2, ...) are allowed only in the functions TensorFlow writes
for that (``__inference__traced_save_*``, ``__inference__traced_restore_*``), whose paths
come from the loader; anywhere else they are findings. Anything not listed is a finding:
an allowlist, not a denylist, so an op added to TensorFlow later is not trusted by default.

Example:
    >>> [op for op, functions in outside_allowlist({"MatMul": {""}, "WriteFile": {"__inference__initializer_28"}}).items()]
    ['WriteFile']
"""

from __future__ import annotations

COMPUTE_OPS = frozenset("""
Abs Acos Acosh Add AddN AddV2 All Any ApproximateEqual ArgMax ArgMin Asin Asinh Atan Atan2 Atanh AvgPool AvgPool3D
BatchMatMul BatchMatMulV2 BatchMatMulV3 BatchToSpaceND BiasAdd BiasAddV1 Bitcast BitwiseAnd BitwiseOr BitwiseXor
BroadcastArgs BroadcastTo Bucketize Cast Ceil CheckNumerics ClipByValue Complex ComplexAbs Concat ConcatV2 Conj Const
Conv Conv2D Conv2DBackpropInput Conv3D Conv3DBackpropInputV2 Cos Cosh Cumprod Cumsum DepthToSpace DepthwiseConv2dNative
Diag DiagPart Digamma Div DivNoNan Einsum Elu Empty EnsureShape Equal Erf Erfc Exp ExpandDims Expm1 ExtractImagePatches
Fill Floor FloorDiv FloorMod FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 Gather GatherNd GatherV2 Greater
GreaterEqual Identity IdentityN If Imag InTopKV2 Inv Invert InvertPermutation IsFinite IsInf IsNan L2Loss LeakyRelu
LeftShift Less LessEqual Lgamma LinSpace Log Log1p LogSoftmax LogicalAnd LogicalNot LogicalOr LRN MatMul MatrixBandPart
MatrixDiag MatrixDiagPart MatrixDiagPartV3 MatrixDiagV3 MatrixSetDiag MatrixSetDiagV3 Max MaxPool MaxPool3D MaxPoolV2
Maximum Mean Min Minimum MirrorPad Mod Mul MulNoNan Multinomial Neg NextAfter NoOp NonMaxSuppressionV3 NotEqual OneHot
OnesLike Pack Pad PadV2 PartitionedCall Placeholder PlaceholderWithDefault Pow Prod QueryEncodingShape Range Rank Real
RealDiv Reciprocal Relu Relu6 Reshape ResizeArea ResizeBicubic ResizeBilinear ResizeNearestNeighbor Reverse ReverseV2
RightShift Rint Round Rsqrt ScatterNd Select SelectV2 Selu Shape ShapeN Sigmoid Sign Sin Sinh Size Slice Snapshot
Softmax Softplus Softsign SpaceToBatchND SpaceToDepth Split SplitV Sqrt Square SquaredDifference Squeeze
StatefulPartitionedCall StatelessIf StatelessWhile StopGradient StridedSlice Sub Sum Tan Tanh TensorListFromTensor
TensorListGetItem TensorListReserve TensorListSetItem TensorListStack TensorScatterUpdate Tile TopKV2 Transpose
TruncateDiv TruncateMod Unpack UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentSum Where While Xdivy Xlog1py Xlogy
ZerosLike StatelessRandomUniformV2 StatelessRandomNormalV2 StatelessRandomGetKeyCounter RandomUniform RandomStandardNormal
VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp VarIsInitializedOp
DestroyResourceOp ResourceGather DisableCopyOnRead
""".split())

# Writing and reading a checkpoint: allowed only inside the functions TensorFlow generates for it.
SAVER_OPS = frozenset("SaveV2 RestoreV2 MergeV2Checkpoints ShardedFilename StringJoin StaticRegexFullMatch".split())
SAVER_FUNCTIONS = ("__inference__traced_save_", "__inference__traced_restore_")


def outside_allowlist(ops: dict[str, set[str]]) -> dict[str, list[str]]:
    """``{op: [functions]}`` for every op (graph_ops' result) used where the allowlist does not allow it."""
    out = {}
    for op, functions in sorted(ops.items()):
        if op in COMPUTE_OPS:
            continue
        where = sorted(f for f in functions if not (op in SAVER_OPS and f.startswith(SAVER_FUNCTIONS)))
        if where:
            out[op] = where
    return out
