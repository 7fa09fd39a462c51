"""What a tensor program may touch: explicit allow-lists, checked on every access.

A program never gets a Python object it could walk out of. Every value it
holds came through one of four doors, and each door asks this module:

* a module attribute (``torch.add``, ``F.relu``, ``nn.Linear``) must be named
  in :data:`MODULE_NAMES`, the explicit list of what each allowed module
  offers. Nothing is allowed because of where it lives ("anything under
  torch" would hand out ``torch.PyTorchFileWriter``, ``torch.from_file`` and
  ``functools.wraps`` re-exported by a torch module);
* an attribute of an object must be named for that object's kind (tensor
  methods, module methods, optimizer methods, ...) or be data the program
  stored on its own objects (:func:`check_attribute`);
* whatever a call, a subscript or a loop hands back is checked like a name
  (:func:`check_value`): a function or class that no allow-list names is
  refused wherever it comes from;
* a call goes only to a callable that passed the doors above
  (:func:`check_call`).

Names starting with ``_`` are never available, and modules (torch's or any
other) can never be assigned to. The operating-system sandbox of the worker
process is the last wall; this is the first.
"""

from __future__ import annotations

import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.autograd.functional
import torch.nn.functional
import torch.optim.lr_scheduler
import torch.utils.checkpoint
import torch.utils.data
from torch import nn
from torch.utils.hooks import RemovableHandle


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# -- what each module offers ----------------------------------------------------------

#: torch's functions a program may call: the tensor maths of ATen, by name. Left out on
#: purpose: file access (from_file, load, save), foreign memory (from_numpy, frombuffer,
#: from_dlpack, as_strided), process-wide settings (set_*), TorchScript (fork, wait,
#: parse_ir, import_ir_module), quantized, sparse and vendor-library internals.
_TORCH_FUNCTIONS = _names("""
abs abs_ absolute acos acos_ acosh acosh_ adaptive_avg_pool1d adaptive_max_pool1d add addbmm
addcdiv addcmul addmm addmv addmv_ addr adjoint all allclose amax amin aminmax angle any arange
arccos arccos_ arccosh arccosh_ arcsin arcsin_ arcsinh arcsinh_ arctan arctan2 arctan_ arctanh
arctanh_ argmax argmin argsort argwhere as_tensor asarray asin asin_ asinh asinh_ atan atan2
atan_ atanh atanh_ atleast_1d atleast_2d atleast_3d avg_pool1d baddbmm bartlett_window
batch_norm bernoulli bilinear binary_cross_entropy_with_logits bincount binomial bitwise_and
bitwise_left_shift bitwise_not bitwise_or bitwise_right_shift bitwise_xor blackman_window
block_diag bmm broadcast_shapes broadcast_tensors broadcast_to bucketize can_cast cartesian_prod
cat cdist ceil ceil_ celu celu_ chain_matmul channel_shuffle cholesky cholesky_inverse
cholesky_solve chunk clamp clamp_ clamp_max clamp_max_ clamp_min clamp_min_ clip clip_ clone
column_stack combinations complex concat concatenate conj conj_physical conj_physical_
constant_pad_nd conv1d conv2d conv3d conv_tbc conv_transpose1d conv_transpose2d
conv_transpose3d convolution copysign corrcoef cos cos_ cosh cosh_ cosine_embedding_loss
cosine_similarity count_nonzero cov cross ctc_loss cummax cummin cumprod cumsum
cumulative_trapezoid deg2rad deg2rad_ det detach detach_ diag diag_embed diagflat diagonal
diagonal_scatter diff digamma dist div divide dot dropout dropout_ dsplit dstack einsum
embedding embedding_bag empty empty_like eq equal erf erf_ erfc erfc_ erfinv exp exp2 exp2_
exp_ expm1 expm1_ eye feature_alpha_dropout feature_dropout fix fix_ flatten flip fliplr flipud
float_power floor floor_ floor_divide fmax fmin fmod frac frac_ frexp full full_like gather gcd
gcd_ ge geqrf ger get_default_dtype get_num_threads gradient greater greater_equal grid_sampler
group_norm gru gru_cell gt hamming_window hann_window hardshrink heaviside hinge_embedding_loss
histc histogram hsplit hstack hypot i0 i0_ igamma igammac imag index_add index_copy index_fill
index_put index_reduce index_select initial_seed inner instance_norm inverse is_complex is_conj
is_floating_point is_grad_enabled is_inference is_inference_mode_enabled is_neg is_nonzero
is_same_size is_signed is_tensor isclose isfinite isin isinf isnan isneginf isposinf isreal
istft kaiser_window kl_div kron kthvalue layer_norm lcm lcm_ ldexp ldexp_ le lerp less
less_equal lgamma linspace log log10 log10_ log1p log1p_ log2 log2_ log_ log_softmax logaddexp
logaddexp2 logcumsumexp logdet logical_and logical_not logical_or logical_xor logit logit_
logspace logsumexp lstm lstm_cell lt lu lu_solve lu_unpack manual_seed margin_ranking_loss
masked_fill masked_scatter masked_select matmul matrix_exp matrix_power max max_pool1d
max_pool1d_with_indices max_pool2d max_pool3d maximum mean median meshgrid min minimum mm mode
moveaxis movedim msort mul multinomial multiply mv mvlgamma nan_to_num nan_to_num_ nanmean
nanmedian nanquantile nansum narrow ne neg neg_ negative negative_ nextafter nonzero norm
normal not_equal nuclear_norm numel ones ones_like outer pairwise_distance pdist permute
pinverse pixel_shuffle pixel_unshuffle poisson poisson_nll_loss polar polygamma positive pow
prelu prod promote_types quantile rad2deg rad2deg_ rand rand_like randint randint_like randn
randn_like randperm range ravel real reciprocal reciprocal_ relu relu_ remainder renorm
repeat_interleave reshape resolve_conj resolve_neg result_type rms_norm rnn_relu rnn_relu_cell
rnn_tanh rnn_tanh_cell roll rot90 round round_ row_stack rrelu rrelu_ rsqrt rsqrt_ rsub
scalar_tensor scatter scatter_add scatter_reduce searchsorted select select_scatter selu selu_
sgn sigmoid sigmoid_ sign signbit sin sin_ sinc sinc_ sinh sinh_ slice_scatter slogdet softmax
sort split sqrt sqrt_ square square_ squeeze stack std std_mean stft sub subtract sum svd
swapaxes swapdims t take take_along_dim tan tan_ tanh tanh_ tensor tensor_split tensordot
threshold threshold_ tile topk trace transpose trapezoid trapz triangular_solve tril
tril_indices triplet_margin_loss triu triu_indices true_divide trunc trunc_ unbind unflatten
unique unique_consecutive unravel_index unsqueeze vander var var_mean vdot view_as_complex
view_as_real vsplit vstack where xlogy xlogy_ zero_ zeros zeros_like
""")
_TORCH_CLASSES = _names("""
Tensor Size Generator device finfo iinfo no_grad enable_grad set_grad_enabled inference_mode
FloatTensor DoubleTensor LongTensor IntTensor BoolTensor
""")
_TORCH_VALUES = _names("""
float float16 float32 float64 half double bfloat16 int int8 int16 int32 int64 long short uint8
bool complex64 complex128 cfloat cdouble strided contiguous_format channels_last
preserve_format pi e inf nan newaxis dtype layout memory_format
""")
_F_FUNCTIONS = _names("""
adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d
adaptive_max_pool2d adaptive_max_pool3d affine_grid alpha_dropout avg_pool1d avg_pool2d
avg_pool3d batch_norm bilinear binary_cross_entropy binary_cross_entropy_with_logits celu celu_
conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d cosine_embedding_loss
cosine_similarity cross_entropy ctc_loss dropout dropout1d dropout2d dropout3d elu elu_
embedding embedding_bag feature_alpha_dropout fold gaussian_nll_loss gelu glu grid_sample
group_norm gumbel_softmax hardshrink hardsigmoid hardswish hardtanh hardtanh_
hinge_embedding_loss huber_loss instance_norm interpolate kl_div l1_loss layer_norm leaky_relu
leaky_relu_ linear local_response_norm log_softmax logsigmoid lp_pool1d lp_pool2d
margin_ranking_loss max_pool1d max_pool2d max_pool3d max_unpool1d max_unpool2d mish mse_loss
multi_margin_loss multilabel_margin_loss multilabel_soft_margin_loss nll_loss normalize one_hot
pad pairwise_distance pdist pixel_shuffle pixel_unshuffle poisson_nll_loss prelu relu relu6
relu_ rms_norm rrelu selu sigmoid silu smooth_l1_loss soft_margin_loss softmax softmin softplus
softshrink softsign tanh tanhshrink threshold triplet_margin_loss unfold upsample
upsample_bilinear upsample_nearest scaled_dot_product_attention
""")
#: The nn layers, losses and containers; DataParallel and the distributed ones are left out.
_NN_CLASSES = _names("""
Module Parameter Buffer Sequential ModuleList ModuleDict ParameterList ParameterDict Identity
Linear Bilinear LazyLinear Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d
Flatten Unflatten Fold Unfold MaxPool1d MaxPool2d MaxPool3d AvgPool1d AvgPool2d AvgPool3d
AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d
AdaptiveMaxPool3d LPPool1d LPPool2d MaxUnpool1d MaxUnpool2d BatchNorm1d BatchNorm2d BatchNorm3d
LayerNorm GroupNorm InstanceNorm1d InstanceNorm2d InstanceNorm3d LocalResponseNorm RMSNorm
Dropout Dropout1d Dropout2d Dropout3d AlphaDropout FeatureAlphaDropout Embedding EmbeddingBag
RNN LSTM GRU RNNCell LSTMCell GRUCell Transformer TransformerEncoder TransformerDecoder
TransformerEncoderLayer TransformerDecoderLayer MultiheadAttention ReLU ReLU6 LeakyReLU PReLU
RReLU ELU SELU CELU GELU SiLU Mish GLU Sigmoid Tanh Softmax Softmax2d Softmin LogSoftmax
LogSigmoid Softplus Softsign Softshrink Hardshrink Hardsigmoid Hardswish Hardtanh Tanhshrink
Threshold ZeroPad1d ZeroPad2d ConstantPad1d ConstantPad2d ReflectionPad1d ReflectionPad2d
ReplicationPad1d ReplicationPad2d CircularPad1d CircularPad2d PixelShuffle PixelUnshuffle
Upsample UpsamplingNearest2d UpsamplingBilinear2d ChannelShuffle CosineSimilarity
PairwiseDistance MSELoss L1Loss SmoothL1Loss HuberLoss CrossEntropyLoss NLLLoss BCELoss
BCEWithLogitsLoss KLDivLoss PoissonNLLLoss GaussianNLLLoss MarginRankingLoss
HingeEmbeddingLoss CosineEmbeddingLoss SoftMarginLoss MultiLabelSoftMarginLoss
MultiLabelMarginLoss MultiMarginLoss TripletMarginLoss CTCLoss
""")
_INIT_FUNCTIONS = _names("""
calculate_gain constant_ dirac_ eye_ kaiming_normal_ kaiming_uniform_ normal_ ones_
orthogonal_ trunc_normal_ uniform_ xavier_normal_ xavier_uniform_ zeros_
""")
_OPTIMIZERS = _names("SGD Adam AdamW Adagrad Adadelta Adamax ASGD LBFGS NAdam RAdam RMSprop Rprop")
_SCHEDULERS = _names("""
LambdaLR MultiplicativeLR StepLR MultiStepLR ConstantLR LinearLR ExponentialLR SequentialLR
CosineAnnealingLR ChainedScheduler ReduceLROnPlateau CyclicLR CosineAnnealingWarmRestarts
OneCycleLR PolynomialLR
""")
_DATA = _names("Dataset TensorDataset DataLoader random_split Subset ConcatDataset")

#: The only modules a program may reach, and every name it may take from each.
MODULE_NAMES: dict[str, frozenset[str]] = {
    "torch": _TORCH_FUNCTIONS | _TORCH_CLASSES | _TORCH_VALUES
    | _names("nn autograd optim linalg special fft cuda utils"),
    "torch.nn": _NN_CLASSES | _names("functional init utils"),
    "torch.nn.functional": _F_FUNCTIONS,
    "torch.nn.init": _INIT_FUNCTIONS,
    "torch.nn.utils": _names(
        "clip_grad_norm_ clip_grad_value_ parameters_to_vector vector_to_parameters"
    ),
    "torch.autograd": _names(
        "grad backward Function Variable functional gradcheck gradgradcheck no_grad enable_grad"
    ),
    "torch.autograd.functional": _names("jacobian hessian vjp jvp hvp vhp"),
    "torch.optim": _OPTIMIZERS | _names("lr_scheduler"),
    "torch.optim.lr_scheduler": _SCHEDULERS,
    "torch.linalg": _names("""
        cholesky cholesky_ex cond cross det diagonal eig eigh eigvals eigvalsh householder_product
        inv inv_ex lstsq lu lu_factor lu_factor_ex lu_solve matmul matrix_exp matrix_norm
        matrix_power matrix_rank multi_dot norm pinv qr slogdet solve solve_ex solve_triangular
        svd svdvals tensorinv tensorsolve vander vecdot vector_norm"""),
    "torch.special": _names("""
        airy_ai bessel_j0 bessel_j1 digamma entr erf erfc erfcx erfinv exp2 expit expm1
        gammainc gammaincc gammaln i0 i0e i1 i1e log1p log_ndtr log_softmax logit logsumexp
        multigammaln ndtr ndtri polygamma psi round sinc softmax xlog1py xlogy zeta"""),
    "torch.fft": _names("""
        fft fft2 fftfreq fftn fftshift hfft ifft ifft2 ifftn ifftshift ihfft irfft irfft2 irfftn
        rfft rfft2 rfftfreq rfftn"""),
    "torch.cuda": _names("is_available device_count"),
    "torch.utils": _names("data checkpoint"),
    "torch.utils.data": _DATA,
    "torch.utils.checkpoint": _names("checkpoint checkpoint_sequential"),
}  # fmt: skip

#: Names never allowed as attributes, whatever the object (a second net under the lists).
DENIED: frozenset[str] = _names("""
load save hub from_file ops classes cpp_extension jit compile export onnx package library
backends distributed multiprocessing storage untyped_storage share_memory_ share_memory
from_numpy numpy pin_memory frombuffer tofile dump dumps load_state_dict_from_url profiler
gi_frame gi_code f_globals f_locals f_back f_builtins f_code tb_frame tb_next cr_frame ag_frame
func_globals format_map
""")

# -- what each kind of object offers ------------------------------------------------------

#: Tensor attributes and methods. Left out: storage and raw memory (storage, data_ptr,
#: set_, resize_, as_strided), numpy, pinning and sharing, `type` (it imports a module
#: named by a string), quantized and sparse internals, vendor devices.
_TENSOR = _names("""
H T mT mH abs abs_ absolute absolute_ acos acos_ acosh acosh_ add add_ addbmm addbmm_ addcdiv
addcdiv_ addcmul addcmul_ addmm addmm_ addmv addmv_ addr addr_ adjoint all allclose amax amin
aminmax angle any arccos arccos_ arccosh arccosh_ arcsin arcsin_ arcsinh arcsinh_ arctan arctan2
arctan2_ arctan_ arctanh arctanh_ argmax argmin argsort argwhere asin asin_ asinh asinh_ atan
atan2 atan2_ atan_ atanh atanh_ backward baddbmm baddbmm_ bernoulli bernoulli_ bfloat16 bincount
bitwise_and bitwise_and_ bitwise_left_shift bitwise_left_shift_ bitwise_not bitwise_not_
bitwise_or bitwise_or_ bitwise_right_shift bitwise_right_shift_ bitwise_xor bitwise_xor_ bmm
bool broadcast_to byte cauchy_ cdouble ceil ceil_ cfloat char cholesky cholesky_inverse
cholesky_solve chunk clamp clamp_ clamp_max clamp_max_ clamp_min clamp_min_ clip clip_ clone
conj conj_physical contiguous copy_ copysign copysign_ corrcoef cos cos_ cosh cosh_
count_nonzero cov cpu cross cummax cummin cumprod cumprod_ cumsum cumsum_ data deg2rad deg2rad_
det detach detach_ device diag diag_embed diagflat diagonal diagonal_scatter diff digamma
digamma_ dim dist div div_ divide divide_ dot double dsplit dtype element_size eq eq_ equal erf
erf_ erfc erfc_ erfinv erfinv_ exp exp2 exp2_ exp_ expand expand_as expm1 expm1_ exponential_
fill_ fill_diagonal_ fix fix_ flatten flip fliplr flipud float float_power float_power_ floor
floor_ floor_divide floor_divide_ fmax fmin fmod fmod_ frac frac_ frexp gather gcd gcd_ ge ge_
geometric_ geqrf ger get_device grad grad_fn greater greater_ greater_equal greater_equal_ gt
gt_ half hardshrink heaviside heaviside_ histc histogram hsplit hypot hypot_ i0 i0_ igamma
igamma_ igammac igammac_ imag index_add index_add_ index_copy index_copy_ index_fill
index_fill_ index_put index_put_ index_reduce index_reduce_ index_select inner int inverse
is_complex is_conj is_contiguous is_cpu is_cuda is_floating_point is_inference is_leaf is_meta
is_neg is_nonzero is_same_size is_signed isclose isfinite isinf isnan isneginf isposinf isreal
item itemsize kron kthvalue layout lcm lcm_ ldexp ldexp_ le le_ lerp lerp_ less less_
less_equal less_equal_ lgamma lgamma_ log log10 log10_ log1p log1p_ log2 log2_ log_ log_normal_
log_softmax logaddexp logaddexp2 logcumsumexp logdet logical_and logical_and_ logical_not
logical_not_ logical_or logical_or_ logical_xor logical_xor_ logit logit_ logsumexp long lt lt_
lu lu_solve masked_fill masked_fill_ masked_scatter masked_scatter_ masked_select matmul
matrix_exp matrix_power max maximum mean median min minimum mm mode moveaxis movedim msort mul
mul_ multinomial multiply multiply_ mv mvlgamma mvlgamma_ nan_to_num nan_to_num_ nanmean
nanmedian nanquantile nansum narrow nbytes ndim ndimension ne ne_ neg neg_ negative negative_
nelement new_full new_ones new_tensor new_zeros new_empty nextafter nextafter_ nonzero norm
normal_ not_equal not_equal_ numel outer output_nr permute pinverse polygamma polygamma_
positive pow pow_ prelu prod put put_ qr quantile rad2deg rad2deg_ random_ ravel real
reciprocal reciprocal_ register_hook register_post_accumulate_grad_hook relu relu_ remainder
remainder_ renorm renorm_ repeat repeat_interleave requires_grad requires_grad_ reshape
reshape_as resolve_conj resolve_neg retain_grad retains_grad roll rot90 round round_ rsqrt
rsqrt_ scatter scatter_ scatter_add scatter_add_ scatter_reduce scatter_reduce_ select
select_scatter sgn sgn_ shape short sigmoid sigmoid_ sign sign_ signbit sin sin_ sinc sinc_
sinh sinh_ size slice_scatter slogdet softmax sort split sqrt sqrt_ square square_ squeeze
squeeze_ std stft stride sub sub_ subtract subtract_ sum sum_to_size svd swapaxes swapaxes_
swapdims swapdims_ t t_ take take_along_dim tan tan_ tanh tanh_ tensor_split tile to tolist
topk trace transpose transpose_ triangular_solve tril tril_ triu triu_ true_divide true_divide_
trunc trunc_ type_as unbind unflatten unfold uniform_ unique unique_consecutive unsqueeze
unsqueeze_ var vdot view view_as vsplit where xlogy xlogy_ zero_ is_shared
""")
_MODULE_METHODS = _names("""
add_module apply bfloat16 buffers children cpu double eval float forward get_buffer
get_parameter get_submodule half load_state_dict modules named_buffers named_children
named_modules named_parameters parameters register_buffer register_forward_hook
register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook
register_module register_parameter requires_grad_ state_dict to train zero_grad training
extra_repr append extend insert items keys values pop update
""")
_OPTIMIZER = _names("step zero_grad param_groups state state_dict load_state_dict "
                    "add_param_group defaults")  # fmt: skip
_SCHEDULER = _names("step get_last_lr last_epoch base_lrs optimizer state_dict load_state_dict")
_DATA_OBJECT = _names("dataset batch_size drop_last tensors indices datasets")
_CTX = _names("save_for_backward saved_tensors needs_input_grad mark_dirty "
              "mark_non_differentiable set_materialize_grads")  # fmt: skip
_NODE = _names("next_functions name variable")
_CONTAINER: dict[type, frozenset[str]] = {
    list: _names("append extend pop index count insert remove copy reverse clear sort"),
    dict: _names("items keys values get pop update copy clear setdefault"),
    tuple: _names("index count"),
    set: _names("add discard remove copy clear union intersection difference"),
    str: _names("startswith endswith upper lower strip lstrip rstrip split join replace "
                "isdigit isalpha format"),
}  # fmt: skip
_SMALL_VALUES: dict[type, frozenset[str]] = {
    torch.dtype: _names("is_floating_point is_complex is_signed itemsize"),
    torch.device: _names("type index"),
    torch.Size: _names("numel index count"),
    torch.finfo: _names("bits eps max min tiny smallest_normal resolution dtype"),
    torch.iinfo: _names("bits max min dtype"),
    torch.Generator: _names("manual_seed initial_seed seed device"),
    RemovableHandle: _names("remove"),
    int: _names("real imag bit_length"),
    float: _names("real imag is_integer"),
    complex: _names("real imag conjugate"),
    bool: _names("real imag"),
}
#: Methods a class body may define although they start with an underscore.
DEFINABLE_DUNDERS: frozenset[str] = _names("__init__ __len__ __getitem__ __call__")
#: Methods GradLab itself may call on a program's objects after the run: never definable.
RESERVED_METHODS: frozenset[str] = _names("extra_repr")


class Refused(Exception):
    """The program asked for something it may not have; the message says what."""


class ProgramObject:
    """Base of every class a program defines (mixed in by the interpreter)."""


class ProgramCode:
    """Base of the program's own functions: running them is interpreting them."""


class Builtin:
    """A builtin GradLab gives programs (``print``, ``len``, a bounded ``list.extend``)."""

    __slots__ = ("function", "name")

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self.name = name
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<built-in function {self.name}>"


class ProgramIterator:
    """An iterator a program holds (``iter(loader)``): only ``next()`` works on it."""

    __slots__ = ("items",)

    def __init__(self, items: Any) -> None:
        self.items = items

    def __iter__(self) -> ProgramIterator:
        return self

    def __next__(self) -> Any:
        return next(self.items)


def _module_values() -> frozenset[Any]:
    found: set[Any] = set()
    for module_name, names in MODULE_NAMES.items():
        module = _import(module_name)
        for name in names:
            value = getattr(module, name, None)
            if callable(value) and not isinstance(value, types.ModuleType):
                found.add(value)
                _PLACES.setdefault(name, []).append((module, name))
    return frozenset(found)


#: Where each listed callable lives: torch rebinds a few of its functions later (importing
#: torch._dynamo wraps torch.manual_seed), and the new object is as listed as the old.
_PLACES: dict[str, list[tuple[types.ModuleType, str]]] = {}


def _is_listed(value: Any) -> bool:
    try:
        if value in ALLOWED_CALLABLES:
            return True
    except TypeError:  # unhashable: not on any list
        return False
    name = getattr(value, "__name__", None)
    places = _PLACES.get(name, ()) if isinstance(name, str) else ()
    return any(getattr(module, attr, None) is value for module, attr in places)


def _import(name: str) -> types.ModuleType:
    module: Any = torch
    for part in name.split(".")[1:]:
        module = getattr(module, part)
    return module  # type: ignore[no-any-return]


#: Python's own classes a program may call (and name in isinstance).
_BUILTIN_CLASSES = frozenset({range, int, float, bool, complex, object})
#: Every function and class the module lists name, by identity.
ALLOWED_CALLABLES: frozenset[Any] = _module_values() | _BUILTIN_CLASSES
_ALLOWED_CLASSES = frozenset(v for v in ALLOWED_CALLABLES if isinstance(v, type))
#: Classes a program's class may derive from (besides its own classes).
ALLOWED_BASES: frozenset[type] = frozenset(
    {object, torch.autograd.Function, torch.utils.data.Dataset}
    | {c for c in _ALLOWED_CLASSES if issubclass(c, nn.Module)}
)
_PLAIN = frozenset(
    {type(None), bool, int, float, complex, str, slice, range, type(Ellipsis), list, tuple,
     dict, set, frozenset, OrderedDict, type({}.items()), type({}.keys()), type({}.values()),
     zip, enumerate, type(iter([])), type(iter(())), type(iter(range(1))), super,
     ProgramIterator, Builtin}
)  # fmt: skip
_OBJECT_TYPES: tuple[type, ...] = (
    torch.Tensor, nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler,
    torch.optim.lr_scheduler.ReduceLROnPlateau, torch.utils.data.Dataset,
    torch.utils.data.DataLoader, torch.utils.data.dataloader._BaseDataLoaderIter,
    torch.dtype, torch.device, torch.Size, torch.finfo, torch.iinfo, torch.layout,
    torch.memory_format, torch.Generator, torch.autograd.graph.Node, RemovableHandle,
    torch.autograd.function.FunctionCtx, ProgramObject, ProgramCode,
    torch.no_grad, torch.enable_grad, torch.set_grad_enabled, torch.inference_mode,
)  # fmt: skip


# -- the four doors ------------------------------------------------------------------------


def check_attribute(obj: object, name: str) -> None:
    """Raise :class:`Refused` unless ``obj.name`` may be read."""
    if name.startswith("_"):
        raise Refused(f"the attribute '{name}' (names starting with '_' are not available)")
    if name in DENIED:
        raise Refused(f"the attribute '{name}'")
    if isinstance(obj, types.ModuleType):
        allowed = MODULE_NAMES.get(obj.__name__)
        if allowed is None:
            raise Refused(f"the module '{obj.__name__}'")
        if name not in allowed:
            _missing(obj, name)
            raise Refused(f"'{obj.__name__}.{name}'")
        return
    if isinstance(obj, type):
        _check_class_attribute(obj, name)
        return
    if _instance_allows(obj, name):
        return
    _missing(obj, name)
    raise Refused(f"the attribute '{name}' of {_describe(obj)}")


def _missing(obj: object, name: str) -> None:
    """A misspelt name is an AttributeError, as in Python (``x.sigmod``), not a refusal."""
    if isinstance(obj, ProgramObject | ProgramCode | Builtin | ProgramIterator):
        return  # the program's own objects: never look further into them
    try:
        found = hasattr(obj, name)
    except Exception:
        return
    if not found:
        raise AttributeError(
            f"module '{obj.__name__}' has no attribute '{name}'"
            if isinstance(obj, types.ModuleType)
            else f"'{type(obj).__name__}' object has no attribute '{name}'"
        )


def _instance_allows(obj: object, name: str) -> bool:
    if isinstance(obj, torch.Tensor):
        return name in _TENSOR
    if isinstance(obj, ProgramObject) and (
        name in _own_data(obj) or name in _program_class_names(type(obj))
    ):
        return True
    if isinstance(obj, nn.Module):
        return name in _MODULE_METHODS or name in _module_data(obj)
    if isinstance(obj, torch.optim.Optimizer):
        return name in _OPTIMIZER
    if isinstance(
        obj, torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    ):
        return name in _SCHEDULER
    if isinstance(obj, torch.utils.data.Dataset | torch.utils.data.DataLoader):
        return name in _DATA_OBJECT
    if isinstance(obj, torch.autograd.function.FunctionCtx):
        return name in _CTX or name in _own_data(obj)
    if isinstance(obj, torch.autograd.graph.Node):
        return name in _NODE
    if type(obj).__module__ == "torch.return_types":
        return True  # named fields of results such as torch.max(x, 0): values, indices
    for kind, allowed in _CONTAINER.items():
        if isinstance(obj, kind):
            return name in allowed
    for kind, allowed in _SMALL_VALUES.items():
        if isinstance(obj, kind):
            return name in allowed
    return False


def _check_class_attribute(cls: type, name: str) -> None:
    if issubclass(cls, ProgramObject):
        if name in _program_class_names(cls):
            return
        if name == "apply" and issubclass(cls, torch.autograd.Function):
            return  # MyFunction.apply(x)
    raise Refused(f"the attribute '{name}' of the class {cls.__name__}")


def check_value(value: Any, where: str) -> Any:
    """Return ``value`` if a program may hold it; raise :class:`Refused` otherwise.

    Applied to whatever an attribute, a call, a subscript or a loop hands back, so a
    function that no allow-list names is refused however it was reached.
    """
    kind = type(value)
    if kind in _PLAIN or kind is torch.Tensor or kind is nn.Parameter:
        return value
    if isinstance(value, types.ModuleType):
        if value.__name__ not in MODULE_NAMES:
            raise Refused(f"the module '{value.__name__}' (reached through {where})")
        return value
    if isinstance(value, type):
        if value in _ALLOWED_CLASSES or issubclass(value, ProgramObject):
            return value
        raise Refused(f"the class {value.__name__} (reached through {where})")
    if isinstance(value, _OBJECT_TYPES) or kind.__module__ == "torch.return_types":
        return value
    if isinstance(value, list | tuple | dict | set | frozenset):
        return value  # its items are checked as they are taken out
    if callable(value):
        check_call(value)
        return value
    raise Refused(f"{_describe(value)} (reached through {where})")


def check_call(func: object) -> None:
    """Raise :class:`Refused` unless ``func`` is on an allow-list or is the program's own."""
    if isinstance(func, ProgramCode | Builtin | nn.Module):
        return  # the program's own code, GradLab's builtins, a model: model(x)
    if isinstance(func, ProgramObject) and "__call__" in _program_class_dunders(type(func)):
        return  # a transform class with __call__, as the data tutorials write
    if isinstance(func, type):
        if func in _ALLOWED_CLASSES or issubclass(func, ProgramObject):
            return
        raise Refused(f"calling the class {func.__name__}")
    if _is_listed(func):
        return
    owner = getattr(func, "__self__", None)
    if isinstance(func, types.MethodType) and isinstance(func.__func__, ProgramCode):
        return  # a method the program defined, bound to its object
    if (
        isinstance(func, types.BuiltinMethodType | types.MethodType | types.MethodWrapperType)
        and owner is not None
        and not isinstance(owner, types.ModuleType)
    ):
        check_attribute(owner, func.__name__)  # a bound method: named for its owner's kind
        return
    raise Refused(f"calling {_describe(func)}")


def check_attribute_assignment(obj: object, name: str, value: object) -> None:
    """Raise :class:`Refused` unless ``obj.name = value`` may be written."""
    if isinstance(obj, types.ModuleType):
        raise Refused(f"setting '{obj.__name__}.{name}' (a module is shared by every program)")
    if isinstance(obj, type):
        raise Refused(f"setting the attribute '{name}' of the class {obj.__name__}")
    if name.startswith("_") or name in DENIED:
        raise Refused(f"setting the attribute '{name}'")
    if isinstance(obj, torch.Tensor):
        if name in ("requires_grad", "grad", "data"):
            return
        raise Refused(f"setting the tensor attribute '{name}' (only requires_grad, grad, data)")
    if isinstance(obj, ProgramObject):
        return  # the program's own object: self.fc = nn.Linear(...), self.transform = f
    if isinstance(obj, torch.autograd.function.FunctionCtx) and name not in _CTX:
        return  # ctx.constant = c in a custom autograd Function
    if isinstance(obj, nn.Module) and isinstance(
        value, nn.Module | torch.Tensor | bool | int | float | None
    ):
        return  # model.fc = nn.Linear(...), layer.weight = nn.Parameter(...), p = 0.5
    raise Refused(f"setting attributes of {_describe(obj)}")


def check_base(base: object) -> type:
    """Return ``base`` if a program's class may derive from it."""
    if isinstance(base, type) and (base in ALLOWED_BASES or issubclass(base, ProgramObject)):
        return base
    name = (
        base.__name__ if isinstance(base, type)
        else base.name if isinstance(base, Builtin) else type(base).__name__
    )  # fmt: skip
    raise Refused(f"a class derived from {name} (allowed: nn.Module and its layers, Dataset, "
                  "torch.autograd.Function, object and the program's own classes)")  # fmt: skip


# -- helpers --------------------------------------------------------------------------


def _own_data(obj: object) -> dict[str, Any]:
    try:
        data = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return {}
    return data if isinstance(data, dict) else {}


def _module_data(module: nn.Module) -> set[str]:
    data = _own_data(module)
    names = {n for n in data if not n.startswith("_")}
    for store in ("_parameters", "_buffers", "_modules"):
        names.update(data.get(store) or {})
    return names


def _program_class_names(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if issubclass(klass, ProgramObject) and klass is not ProgramObject:
            names.update(n for n in vars(klass) if not n.startswith("_"))
    if issubclass(cls, nn.Module):
        names.discard("training")  # data of the instance, found there
    return names


def _program_class_dunders(cls: type) -> set[str]:
    return {
        n
        for klass in cls.__mro__
        if issubclass(klass, ProgramObject) and klass is not ProgramObject
        for n in vars(klass)
        if n in DEFINABLE_DUNDERS
    }


def _describe(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    if isinstance(obj, types.ModuleType):
        return f"the module {obj.__name__}"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    module = getattr(obj, "__module__", None)
    if callable(obj) and isinstance(name, str):
        where = f"{module}." if isinstance(module, str) else ""
        return f"'{where}{name}'"
    return f"a {type(obj).__name__} object"
