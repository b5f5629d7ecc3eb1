"""Facts about SageMaker ML instance types that change what a template may ask for."""

from __future__ import annotations

import re

# Families whose name carries a `d` after the generation have local NVMe instance storage
# (ml.m5d, ml.c6id, ml.g4dn, ml.p4d, ml.r6gd, ...); these do too without saying so in the name.
_NVME_FAMILIES_WITHOUT_D = frozenset(
    {"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6-b200", "trn1", "trn1n", "trn2"}
)
_D_FAMILY = re.compile(r"^[a-z]+\d+[a-z]*d[a-z]*$")


def has_instance_storage(instance_type: str) -> bool:
    """Whether `ml.<family>.<size>` comes with local NVMe instance storage.

    Such instances keep training data, checkpoints and models on the NVMe volume, which the
    instance's hardware encrypts. SageMaker then rejects a KMS key for the storage volume
    (`ResourceConfig.VolumeKmsKeyId` of a training job, `KmsKeyId` of an endpoint config): the
    request fails, so templates must leave the key out for these types.
    """
    parts = instance_type.split(".")
    if len(parts) != 3 or parts[0] != "ml":
        raise ValueError(f"not a SageMaker instance type: {instance_type!r}")
    family = parts[1]
    return family in _NVME_FAMILIES_WITHOUT_D or bool(_D_FAMILY.fullmatch(family))
