import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks import check_images, check_radius, project


@pytest.mark.parametrize("radius", [-0.1, 1.5, math.nan, math.inf, "wide", None])
def test_invalid_radius_is_rejected(radius):
    with pytest.raises(ValueError, match="radius"):
        check_radius(radius)


@pytest.mark.parametrize("radius", [0, 0.1, 1])
def test_valid_radius_is_returned_as_float(radius):
    assert check_radius(radius) == float(radius)


@pytest.mark.parametrize("bad", [torch.full((1, 1, 4, 4), 1.5), torch.full((1, 1, 4, 4), -0.1),
                                 torch.full((1, 1, 4, 4), math.nan)])
def test_images_outside_the_box_are_rejected(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_images(bad)


@pytest.mark.parametrize("bad", [torch.zeros(1, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long)])
def test_images_of_wrong_shape_or_type_are_rejected(bad):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        check_images(bad)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), radius=st.floats(0.0, 1.0), spread=st.floats(0.0, 3.0))
def test_projection_lands_in_ball_and_box_and_is_idempotent(seed, radius, spread):
    generator = torch.Generator().manual_seed(seed)
    x_ref = torch.rand(3, 2, 5, 5, generator=generator)
    delta = spread * torch.randn(3, 2, 5, 5, generator=generator)
    x_adv = project(x_ref, delta, radius=radius)
    assert (x_adv - x_ref).abs().max() <= radius + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(project(x_ref, x_adv - x_ref, radius=radius), x_adv)


def test_projection_keeps_feasible_points():
    x_ref = torch.full((1, 1, 2, 2), 0.5)
    delta = torch.tensor([0.05, -0.05, 0.0, 0.1]).reshape(1, 1, 2, 2)
    assert torch.allclose(project(x_ref, delta, radius=0.1), x_ref + delta)
