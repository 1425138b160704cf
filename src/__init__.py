"""Lipschitz GAN lab: compare Lipschitz regularizers of GAN discriminators."""
from omegaconf import OmegaConf


def method_name(regularizer: str, penalty: str | None = None) -> str:
    """What a run compares: "sn", "sn+r1", or "r1" for regularizer=none penalty=r1 (summary.json's "method")."""
    if penalty in (None, "none", "None"):
        return str(regularizer)
    return str(penalty) if regularizer == "none" else f"{regularizer}+{penalty}"


# ${method:${regularizer.name},${penalty.name}} in conf/config.yaml's run dir: registered on import of the
# package, before Hydra composes anything (python -m src.train imports src first)
if not OmegaConf.has_resolver("method"):
    OmegaConf.register_new_resolver("method", method_name)
