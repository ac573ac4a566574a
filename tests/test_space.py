import hashlib
import itertools
import json

import numpy as np
import pytest

from mednns.nn.space import Arch, SearchSpace

SPACE = SearchSpace()

# A mixed arch of the default space, written out in canonical form (inactive slots are 0).
MIXED = Arch(
    depths=(2, 3, 4, 2),
    kernels=(3, 5, 0, 0, 7, 3, 5, 0, 5, 5, 7, 3, 3, 7, 0, 0),
    expands=(4, 6, 0, 0, 3, 3, 6, 0, 6, 4, 3, 4, 6, 3, 0, 0),
)
MIXED_JSON = (
    '{"depths":[2,3,4,2],'
    '"expands":[4,6,0,0,3,3,6,0,6,4,3,4,6,3,0,0],'
    '"kernels":[3,5,0,0,7,3,5,0,5,5,7,3,3,7,0,0]}'
)
LARGEST_JSON = (
    '{"depths":[4,4,4,4],'
    '"expands":[6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6],'
    '"kernels":[7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7]}'
)


def test_arch_json_and_dict_round_trip():
    assert Arch.from_json(MIXED.to_json()) == MIXED
    assert Arch.from_dict(json.loads(json.dumps(MIXED.to_dict()))) == MIXED


@pytest.mark.parametrize(
    "arch, canonical, arch_id",
    [(MIXED, MIXED_JSON, "3707caffb403"), (SPACE.largest(), LARGEST_JSON, "c8e55f171c00")],
)
def test_arch_id_is_sha1_of_canonical_json(arch, canonical, arch_id):
    # The ids are hard-coded: results stored under an arch_id must stay findable across versions.
    assert arch.to_json() == canonical
    assert hashlib.sha1(canonical.encode()).hexdigest()[:12] == arch_id
    assert arch.arch_id == arch_id


def test_inactive_slots_are_canonicalised():
    junk_kernels = list(MIXED.kernels)
    junk_expands = list(MIXED.expands)
    for slot in (2, 3, 7, 14, 15):  # the inactive slots of MIXED
        junk_kernels[slot], junk_expands[slot] = 7, 6
    same = Arch(
        depths=np.array(MIXED.depths),  # numpy ints must give the same plain-int arch
        kernels=np.array(junk_kernels),
        expands=junk_expands,
    )
    assert same == MIXED
    assert same.arch_id == MIXED.arch_id
    assert all(type(v) is int for v in same.depths + same.kernels + same.expands)


def test_equal_archs_hash_equal_and_work_as_dict_keys():
    copy = Arch.from_json(MIXED_JSON)
    assert copy is not MIXED and hash(copy) == hash(MIXED)
    results = {MIXED: 0.9, SPACE.largest(): 0.8}
    assert results[copy] == 0.9


def test_arch_rejects_inconsistent_lengths_and_non_integers():
    with pytest.raises(ValueError):
        Arch(depths=(2, 2), kernels=(3,) * 7, expands=(3,) * 7)
    with pytest.raises(ValueError):
        Arch(depths=(2, 2), kernels=(3,) * 8, expands=(3,) * 6)
    with pytest.raises(TypeError):
        Arch(depths=(2.5, 2), kernels=(3,) * 8, expands=(3,) * 8)


def test_seeded_sampling_is_deterministic():
    first = [SPACE.sample(np.random.default_rng(7)) for _ in range(3)]
    rng_a, rng_b = np.random.default_rng(123), np.random.default_rng(123)
    assert [SPACE.sample(rng_a) for _ in range(20)] == [SPACE.sample(rng_b) for _ in range(20)]
    assert first[0] == first[1] == first[2]
    assert SPACE.sample(np.random.default_rng(1)) != SPACE.sample(np.random.default_rng(2))


def test_sampling_covers_every_choice_and_stays_in_space():
    rng = np.random.default_rng(0)
    archs = [SPACE.sample(rng) for _ in range(300)]
    for arch in archs:
        SPACE.validate(arch)
    for stage in range(SPACE.n_stages):
        assert {a.depths[stage] for a in archs} == set(SPACE.depth_choices)
    slot = 0  # always active: every depth choice is >= 1
    assert {a.kernels[slot] for a in archs} == set(SPACE.kernel_choices)
    assert {a.expands[slot] for a in archs} == set(SPACE.expand_choices)
    last_slot = SPACE.max_depth - 1  # active only at max depth, else canonical 0
    assert {a.kernels[last_slot] for a in archs} == set(SPACE.kernel_choices) | {0}


def test_largest_and_smallest():
    largest, smallest = SPACE.largest(), SPACE.smallest()
    assert largest.depths == (4, 4, 4, 4) and set(largest.kernels) == {7} and set(largest.expands) == {6}
    assert smallest.depths == (2, 2, 2, 2)
    assert smallest.kernels[:4] == (3, 3, 0, 0) and smallest.expands[:4] == (3, 3, 0, 0)
    SPACE.validate(largest)
    SPACE.validate(smallest)


@pytest.mark.parametrize(
    "arch",
    [
        Arch(depths=(2, 2, 2), kernels=(3,) * 12, expands=(3,) * 12),  # too few stages
        Arch(depths=(2, 2, 2, 2), kernels=(3,) * 12, expands=(3,) * 12),  # too few slots per stage
        Arch(depths=(2, 2, 5, 2), kernels=(3,) * 16, expands=(3,) * 16),  # depth not a choice
        Arch(depths=(2, 2, 2, 2), kernels=(3, 4) + (3,) * 14, expands=(3,) * 16),  # even kernel
        Arch(depths=(2, 2, 2, 2), kernels=(3,) * 16, expands=(3, 5) + (3,) * 14),  # expand not a choice
        Arch(depths=(2, 2, 2, 2), kernels=(3, 0) + (3,) * 14, expands=(3,) * 16),  # active slot left empty
    ],
)
def test_validate_rejects_archs_outside_the_space(arch):
    with pytest.raises(ValueError):
        SPACE.validate(arch)


def test_count_matches_brute_force_enumeration():
    space = SearchSpace(
        widths=(8, 16), strides=(1, 2), depth_choices=(1, 2), kernel_choices=(3, 5), expand_choices=(2,)
    )
    archs = set()
    for depths in itertools.product(space.depth_choices, repeat=space.n_stages):
        n_slots = space.n_stages * space.max_depth
        for kernels in itertools.product(space.kernel_choices, repeat=n_slots):
            for expands in itertools.product(space.expand_choices, repeat=n_slots):
                archs.add(Arch(depths, kernels, expands))  # canonicalisation merges duplicates
    # Per stage: 2 (depth 1) + 4 (depth 2) = 6; two stages: 36.
    assert space.count() == len(archs) == 36
    assert SPACE.count() == (9**2 + 9**3 + 9**4) ** 4


def test_encoding_has_fixed_length_and_separates_archs():
    rng = np.random.default_rng(0)
    archs = list({SPACE.sample(rng) for _ in range(200)})
    codes = np.stack([SPACE.encode(a) for a in archs])
    assert codes.dtype == np.float32
    assert codes.shape == (len(archs), SPACE.encoding_size)
    assert len({c.tobytes() for c in codes}) == len(archs)
    # One depth one-hot per stage plus one kernel and one expand one-hot per active block.
    assert (codes.sum(axis=1) == [SPACE.n_stages + 2 * sum(a.depths) for a in archs]).all()


def test_space_dict_round_trip_through_json():
    space = SearchSpace(widths=(16, 32), strides=(2, 2), depth_choices=(1, 2), head_width=64)
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    assert SearchSpace.from_dict(SPACE.to_dict()) == SPACE


@pytest.mark.parametrize("image_size, stride", [(28, 1), (64, 2), (128, 4), (224, 8)])
def test_stem_stride_brings_every_medmnist_size_to_about_28_px(image_size, stride):
    assert SPACE.stem_stride(image_size) == stride
