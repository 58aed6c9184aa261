"""The sampling target: the per-point potential of a Pyro model conditioned on its data.

For every data point n the defence samples the true posterior p(z_n | x_n) ∝ p(x_n | z_n) p(z_n)
(paper Section 3, Algorithm 1), i.e. the potential

    U(z_n) = -log p(x_n | z_n) - log p(z_n).

It is read off the Pyro model's own log density (the latent site takes the given z, every other
sample site's per-point ``log_prob``, scaled and masked as Pyro does, is summed), never from a
hand-copied formula, so whatever likelihood, prior or ``poutine.scale`` the model uses is what
the sampler targets.

A hierarchical model has several latent sites (one per group); given as a sequence, they are
sampled jointly through one flat z, each site's value flattened and concatenated in the given
order (:class:`~inference.layout.LatentLayout`), so U(z) = −log p(x|z) − Σ_k log p(z_k | z_>k)
(PROTOCOL.md §7) and every sampler works on (C, N, D) unchanged.

Cost: the model's structure (the latent sites, observed sites, one density term per point) is
checked once, by a full ``poutine.trace`` at construction. The log density is the model run
under one light handler, :class:`_LogDensity`, that substitutes z and adds up the log-densities
as the sites go by (no ``Trace`` object, no ``poutine.condition``). For the sampler's hot loop
that run AND its ``autograd.grad`` are recorded once, by ``make_fx`` in fake mode (shapes only,
no arithmetic), into one plain tensor program of the full batch: the loop then calls the same
kernels in the same order with no Python from Pyro or the model and no autograd graph to build
or walk. Measured on the MNIST conv VAE at N = 50 (160 calls, one thread): the program costs
what a hand-written potential with ``autograd.grad`` costs (within the ±2 % noise of the
machine), the handler run through autograd about 8 % more; recording it costs about 50 ms,
once. The program is checked at a second point against the model's own traced log density and
not used when it differs or cannot be recorded: ``make_fx`` refuses an operation whose result
depends on tensor values (``float(z)``, ``if z.sum() > 0``), so a model whose Python control
flow depends on its latents runs the handler instead, never a frozen branch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Callable, Literal

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from torch.fx.experimental.proxy_tensor import make_fx
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from inference.layout import LatentLayout, site_names

ValueAndGrad = Callable[[Tensor], tuple[Tensor, Tensor]]
# (z_rows (K, D), rows (K,)) -> (U (K,), grad (K, D)): the potential of some chains only, rows
# being flat chain-major indices c·N + n into the (C, N) batch (used by NUTS, see nuts.py).
RowsValueAndGrad = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _is_density_site(site: dict) -> bool:
    """A sample site that contributes to the density (plates appear as subsample sites)."""
    return site["type"] == "sample" and not site_is_subsample(site)


def _tile(arg, num_chains: int):
    """Repeat a tensor model argument ``num_chains`` times along dim 0 (chain-major order)."""
    if not torch.is_tensor(arg):
        return arg
    return arg.repeat((num_chains,) + (1,) * (arg.dim() - 1))


class _LogDensity(Messenger):
    """Give the latent sites the values ``latents`` and sum the log-densities of all sample sites.

    What ``poutine.condition`` + ``poutine.trace`` + ``Trace.log_prob_sum`` per point would
    give, in one pass: every non-subsample sample site adds ``scale_and_mask(fn.log_prob(value))``
    (so ``poutine.scale`` and ``poutine.mask`` count as in Pyro's own log density) to ``total``.

    Shape: latents {site: (K, *event_shape)}; ``total`` (K,) once the model has run (the
    structure check at construction guarantees one term per row for every site).
    """

    def __init__(self, latents: dict[str, Tensor]):
        super().__init__()
        self.latents = latents
        self.total: Tensor | None = None

    def _pyro_sample(self, msg):
        # Runs after the model's own handlers (plates, scale) have seen the site, as an
        # outer poutine.condition would.
        if msg["name"] in self.latents:
            msg["value"] = self.latents[msg["name"]]
            msg["is_observed"] = True

    def _pyro_post_sample(self, msg):
        if site_is_subsample(msg):
            return
        log_prob = msg["fn"].log_prob(msg["value"], *msg["args"], **msg["kwargs"])
        log_prob = scale_and_mask(log_prob, msg["scale"], msg["mask"])
        self.total = log_prob if self.total is None else self.total + log_prob


class PosteriorTarget:
    """Per-point potential U(z) = -log p(x|z) - log p(z) of a Pyro model conditioned on its args.

    The model must put its data in a ``pyro.plate`` over dim -1, have exactly one unobserved
    sample site (``latent_site``, value shape (N, D), event dim 1) and only observed sites
    otherwise, each with one log-density term per point. ``latent_site`` may instead be a
    sequence of sites (a hierarchical model's groups, top first), each of value shape
    (N, *event_shape) with one term per point: z is then their flat concatenation in that order
    (``layout``, :class:`~inference.layout.LatentLayout`), D = Σ sizes. ``num_chains`` copies of the data are
    evaluated in ONE model call: the tensor model args and kwargs (all with N rows) are tiled
    ``num_chains`` times along dim 0 once, here, and the latents of shape (C, N, D) are flattened chain-major to (C·N, D).

    The structure is checked once, at construction, by tracing the model (under the caller's
    Pyro validation setting, with the global RNG restored afterwards); the hot-path evaluations
    then run the model under :class:`_LogDensity` only, with Pyro validation off, since the
    sampler probes non-finite regions on purpose.

    ``value_and_grad_rows`` evaluates some chains only (their data rows gathered from the tiled
    args), so a sampler whose chains stop at different times (NUTS) pays for the chains still
    moving, not for the whole batch.

    ``compile``: evaluate the full batch's value and gradient through one traced tensor program
    (see the module docstring); ``compiled`` says whether that program is in use (it is not
    when recording fails, e.g. on a value read into Python, or when the program does not
    reproduce the model's log density at the structure check's point). Row subsets and
    :meth:`log_joint` always run the handler.

    Shape:
        - model args and kwargs: tensors with N rows (dim 0); other values pass through
        - ``potential(z)``, ``log_joint(z)``: z (C, N, D) -> (C, N)
        - ``value_and_grad(z)``, ``target(z)``: z (C, N, D) -> ((C, N), (C, N, D))
        - ``value_and_grad_rows(z_rows, rows)``: z_rows (K, D), rows (K,) flat chain-major
          indices c·N + n -> ((K,), (K, D))
    """

    def __init__(
        self,
        model: Callable,
        model_args: tuple = (),
        *,
        latent_site: str | Sequence[str] = "z",
        num_chains: int = 1,
        model_kwargs: dict | None = None,
        compile: bool = True,
    ):
        if num_chains < 1:
            raise ValueError(f"num_chains must be >= 1, got {num_chains}")
        self.model = model
        self.latent_site = latent_site
        self._sites = site_names(latent_site)
        self.num_chains = num_chains
        self._kwargs = dict(model_kwargs or {})
        z_checked, log_density_checked, self.layout = self._inspect(model_args)
        self.num_points, self.latent_dim = z_checked.shape
        self.dtype, self.device = z_checked.dtype, z_checked.device
        self._tiled_args = tuple(_tile(a, num_chains) for a in model_args)
        self._tiled_kwargs = {k: _tile(v, num_chains) for k, v in self._kwargs.items()}
        self._program = None
        if compile:
            self._program = self._trace_value_and_grad(_tile(z_checked, num_chains),
                                                       _tile(log_density_checked, num_chains))

    @property
    def compiled(self) -> bool:
        """Whether full-batch value-and-grad calls run the traced tensor program."""
        return self._program is not None

    def _inspect(self, model_args: tuple) -> tuple[Tensor, Tensor, LatentLayout]:
        """Check the model's structure on one prior draw; return that draw z (N, D), the model's
        log density there per point (N,), from Pyro's own trace, and the sites' layout."""
        with torch.random.fork_rng(), poutine.block():
            trace = poutine.trace(self.model).get_trace(*model_args, **self._kwargs)
        trace.compute_log_prob(lambda _, site: _is_density_site(site))
        single = isinstance(self.latent_site, str)
        values = []
        for name in self._sites:
            site = trace.nodes.get(name)
            if site is None or site["type"] != "sample" or site["is_observed"]:
                raise ValueError(f"model has no unobserved sample site named {name!r}")
            value = site["value"]
            # one site keeps the flat (N, D) contract; a group may have any event shape
            well_shaped = value.dim() == 2 if single else value.dim() >= 2
            if not well_shaped:
                expected = "(N, D)" if single else "(N, *event_shape)"
                raise ValueError(f"latent site {name!r} must have value shape {expected}, "
                                 f"got {tuple(value.shape)}")
            values.append(value.detach())
        num_points = values[0].shape[0]
        for name, other in trace.nodes.items():
            if not _is_density_site(other):
                continue
            if name not in self._sites and not other["is_observed"]:
                raise ValueError(
                    f"model has another unobserved sample site {name!r}; "
                    "condition it or make it a latent site"
                )
            if other["log_prob"].shape != (num_points,):
                raise ValueError(
                    f"site {name!r} has log_prob shape {tuple(other['log_prob'].shape)}; "
                    f"expected one term per point, ({num_points},): put it inside the data "
                    "plate with its non-batch dims declared as event dims"
                )
        layout = LatentLayout(self._sites, tuple(tuple(v.shape[1:]) for v in values))
        z = torch.cat([value.reshape(num_points, -1) for value in values], dim=1)
        log_density = sum(s["log_prob"] for s in trace.nodes.values() if _is_density_site(s))
        return z, log_density.detach(), layout

    def _trace_value_and_grad(self, z_flat: Tensor, expected: Tensor) -> Callable | None:
        """U and dU/dz of the full batch as one plain tensor program, forward and backward.

        ``make_fx`` records every tensor operation of one run of :meth:`_handler_value_and_grad`
        (the model under :class:`_LogDensity`, then ``autograd.grad``), the backward included, so
        the program calls the same kernels as autograd would, in order, without building or
        walking a graph. It is recorded in fake mode: only shapes flow through the run, so an
        operation whose result depends on tensor values (``float(z)``, ``if z.sum() > 0``)
        raises instead of being frozen into the program. The program is then checked at
        ``z_flat`` against ``expected``, the model's own log density there (C·N,), from Pyro's
        trace. Returns None (the handler path is used) when recording fails or the check does.

        Shape: the program maps z (C·N, D) -> (U (C·N,), dU/dz (C·N, D)).
        """
        tensors = {("kwargs" if keyword else "args", key): value
                   for keyword, items in ((False, enumerate(self._tiled_args)), (True, self._tiled_kwargs.items()))
                   for key, value in items if torch.is_tensor(value)}

        def value_and_grad(z: Tensor, *data: Tensor) -> tuple[Tensor, Tensor]:
            args, kwargs = list(self._tiled_args), dict(self._tiled_kwargs)
            for (where, key), tensor in zip(tensors, data):
                if where == "kwargs":
                    kwargs[key] = tensor
                else:
                    args[key] = tensor
            return self._handler_value_and_grad(z, tuple(args), kwargs)

        data = tuple(tensors.values())
        try:
            with warnings.catch_warnings(), torch.random.fork_rng(devices=[z_flat.device] if z_flat.is_cuda else []):
                warnings.simplefilter("ignore")  # what tracing says about the model is its verdict below
                program = make_fx(value_and_grad, tracing_mode="fake", _allow_non_fake_inputs=True)(z_flat, *data)
        except Exception:  # any tracing limitation leaves the handler path, which is always right
            return None
        program.graph.eliminate_dead_code()  # e.g. the plate's index range, unused once traced
        program.recompile()
        with torch.no_grad():
            value, grad = program(z_flat, *data)
        if not (grad.shape == z_flat.shape and value.shape == expected.shape
                and torch.allclose(-value, expected, rtol=1e-5, atol=1e-5, equal_nan=True)):
            return None

        def recorded(z: Tensor) -> tuple[Tensor, Tensor]:
            # The program's outputs are data: run it without autograd, or weights that require
            # grad (a model fresh from the zoo is in eval mode, not frozen) would chain a graph
            # through every transition of the chain.
            with torch.no_grad():
                return program(z, *data)

        return recorded

    def _log_density(self, z_flat: Tensor, args: tuple, kwargs: dict) -> Tensor:
        """log p(x, z) of the model run once on rows of the tiled data. Shape: (K, D) -> (K,)."""
        handler = _LogDensity(self.layout.split(z_flat))
        with pyro.validation_enabled(False), handler:
            self.model(*args, **kwargs)
        return handler.total

    def _flat(self, z: Tensor) -> Tensor:
        """Check z's shape (C, N, D) and flatten it chain-major to (C·N, D)."""
        expected = (self.num_chains, self.num_points, self.latent_dim)
        if tuple(z.shape) != expected:
            raise ValueError(f"z must have shape {expected}, got {tuple(z.shape)}")
        return z.reshape(-1, self.latent_dim)

    def log_joint(self, z: Tensor) -> Tensor:
        """log p(x, z) = log p(x|z) + log p(z) per chain and point, through the model (so it is
        differentiable, e.g. for :mod:`inference.unrolled`).

        Shape:
            z (C, N, D) -> (C, N), with C = ``num_chains``.
        """
        total = self._log_density(self._flat(z), self._tiled_args, self._tiled_kwargs)
        return total.reshape(self.num_chains, self.num_points)

    def potential(self, z: Tensor) -> Tensor:
        """U(z) = -log p(x|z) - log p(z). Shape: z (C, N, D) -> (C, N)."""
        return -self.log_joint(z)

    def _handler_value_and_grad(self, z_flat: Tensor, args: tuple, kwargs: dict) -> tuple[Tensor, Tensor]:
        """U and dU/dz of rows of the tiled data: one model call and one autograd call.

        Points are independent, so the gradient of sum(U) is every point's own gradient; a
        non-finite U at one point stays in that point's row.

        Shape: z_flat (K, D) -> (U (K,), grad (K, D)); both detached.
        """
        with torch.enable_grad():
            z_flat = z_flat.detach().requires_grad_(True)
            potential = -self._log_density(z_flat, args, kwargs)
            (grad,) = torch.autograd.grad(potential.sum(), z_flat)
        return potential.detach(), grad

    def value_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """U(z) and dU/dz of the whole batch: the traced program when :attr:`compiled`, else
        one model call and one autograd call.

        Shape:
            z (C, N, D) -> (U (C, N), grad (C, N, D)); both detached.
        """
        z_flat = self._flat(z)
        if self._program is not None:
            potential, grad = self._program(z_flat)
        else:
            potential, grad = self._handler_value_and_grad(z_flat, self._tiled_args, self._tiled_kwargs)
        return potential.reshape(z.shape[:-1]), grad.reshape(z.shape)

    def __call__(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`value_and_grad`, so a target is itself a kernel's ``potential_fn``."""
        return self.value_and_grad(z)

    def value_and_grad_rows(self, z_rows: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """U and dU/dz of the chains ``rows`` only, one model call on their gathered data.

        Shape:
            z_rows (K, D), rows (K,) int64 flat chain-major indices c·N + n into the (C, N)
            batch -> (U (K,), grad (K, D)); both detached.
        """
        args = tuple(a.index_select(0, rows) if torch.is_tensor(a) else a for a in self._tiled_args)
        kwargs = {k: v.index_select(0, rows) if torch.is_tensor(v) else v
                  for k, v in self._tiled_kwargs.items()}
        return self._handler_value_and_grad(z_rows, args, kwargs)


class _DrawFromGuide(Messenger):
    """Give each named guide site loc + scale·ε (ε from ``generator``) or its loc, as it goes.

    Drawing inside the guide keeps a hierarchical guide ancestral: each lower group's q is read
    at the values just given to the groups above.
    """

    def __init__(self, sites: tuple[str, ...], *, mean: bool, generator: torch.Generator | None):
        super().__init__()
        self.sites = sites
        self.mean = mean
        self.generator = generator
        self.scales: dict[str, Tensor] = {}  # each site's q scale where it was drawn

    def _pyro_sample(self, msg):
        if msg["name"] not in self.sites or msg["value"] is not None:
            return
        base = msg["fn"]
        while isinstance(base, torch.distributions.Independent):
            base = base.base_dist
        if not isinstance(base, torch.distributions.Normal):
            raise ValueError(
                f"guide site {msg['name']!r} must be a Normal (optionally .to_event), "
                f"got {type(msg['fn']).__name__}"
            )
        loc, scale = torch.broadcast_tensors(base.loc, base.scale)
        self.scales[msg["name"]] = scale
        if self.mean:
            msg["value"] = loc
        else:
            noise = torch.randn(loc.shape, generator=self.generator, dtype=loc.dtype,
                                device=loc.device)
            msg["value"] = loc + scale * noise


def draw_initial_latents(
    guide: Callable,
    model_args: tuple = (),
    *,
    num_chains: int = 1,
    init: Literal["sample", "mean"] = "sample",
    latent_site: str | Sequence[str] = "z",
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> tuple[Tensor, LatentLayout]:
    """Starting latents from the encoder q(z|x): z₀ ~ q(z|x) (Algorithm 1, the paper) or its mean,
    and the layout of the latent sites in them.

    The guide runs once, on the data tiled ``num_chains`` times (chain-major) for "sample" and
    untiled for "mean" (repeated over chains); each of its ``latent_site`` sites must be a
    (possibly ``to_event``) Normal and is given loc + scale·ε with ε drawn from ``generator``
    (which must be on the guide's device), or its loc, so draws are reproducible and
    independent of Pyro's global RNG. With several sites (a hierarchical guide, top first) the
    draw is ancestral: each group's q sees the values drawn above it ("mean": the means above
    it). The values are flattened and concatenated in site order.

    Shape:
        returns ((num_chains, N, D) on the guide's device, layout with D = layout.dim).
    """
    if init not in ("sample", "mean"):
        raise ValueError(f"init must be 'sample' or 'mean', got {init!r}")
    sites = site_names(latent_site)
    copies = 1 if init == "mean" else num_chains
    args = tuple(_tile(a, copies) for a in model_args)
    kwargs = {k: _tile(v, copies) for k, v in (model_kwargs or {}).items()}
    draw = _DrawFromGuide(sites, mean=init == "mean", generator=generator)
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(draw(guide)).get_trace(*args, **kwargs)
    missing = [name for name in sites
               if name not in trace.nodes or trace.nodes[name]["type"] != "sample"]
    if missing:
        raise ValueError(f"guide has no sample site named {missing[0]!r}")
    values = [trace.nodes[name]["value"].detach() for name in sites]
    rows = values[0].shape[0]
    layout = LatentLayout(sites, tuple(tuple(v.shape[1:]) for v in values))
    z = torch.cat([v.reshape(rows, -1) for v in values], dim=1).reshape(copies, -1, layout.dim)
    return z.expand(num_chains, -1, -1).clone(), layout


def encoder_moments(
    guide: Callable,
    model_args: tuple = (),
    *,
    latent_site: str | Sequence[str] = "z",
    model_kwargs: dict | None = None,
) -> tuple[Tensor, Tensor]:
    """The guide's mean and variance σ²(x) of every latent coordinate, from one run of the guide
    along its means (a hierarchical guide's lower groups at the means of the groups above),
    flattened in site order like the latents.

    Shape:
        returns ((N, D), (N, D)) on the guide's device.
    """
    sites = site_names(latent_site)
    draw = _DrawFromGuide(sites, mean=True, generator=None)
    kwargs = model_kwargs or {}
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(draw(guide)).get_trace(*model_args, **kwargs)
    missing = [name for name in sites if name not in draw.scales]
    if missing:
        raise ValueError(f"guide has no sample site named {missing[0]!r}")

    def flat(values):
        return torch.cat([v.detach().reshape(v.shape[0], -1) for v in values], dim=1)

    return (flat(trace.nodes[name]["value"] for name in sites),
            flat(draw.scales[name] for name in sites).square())


def encoder_variance(
    guide: Callable,
    model_args: tuple = (),
    *,
    latent_site: str | Sequence[str] = "z",
    model_kwargs: dict | None = None,
) -> Tensor:
    """The guide's variance σ²(x) of :func:`encoder_moments`: the free, per-point inverse mass
    matrix of :mod:`inference.mass`.

    Shape:
        returns (N, D) on the guide's device.
    """
    return encoder_moments(guide, model_args, latent_site=latent_site,
                           model_kwargs=model_kwargs)[1]


def initial_latents(
    guide: Callable,
    model_args: tuple = (),
    *,
    num_chains: int = 1,
    init: Literal["sample", "mean"] = "sample",
    latent_site: str | Sequence[str] = "z",
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> Tensor:
    """The latents of :func:`draw_initial_latents`, without the layout.

    Shape:
        returns (num_chains, N, D) on the guide's device; the mean is repeated over chains.
    """
    return draw_initial_latents(guide, model_args, num_chains=num_chains, init=init,
                                latent_site=latent_site, generator=generator,
                                model_kwargs=model_kwargs)[0]
