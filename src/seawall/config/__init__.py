"""Settings: one YAML file of pydantic models, `${VAR}` interpolation, `SEAWALL_*` overrides.

`load_config(path)` reads and validates a file; every model class documents its fields (see
`seawall config schema`).
"""

from seawall.config.base import Settings
from seawall.config.document import SeawallConfig
from seawall.config.llm import DeploymentSettings, LlmModelSettings, LlmSettings
from seawall.config.loader import ENV_PREFIX, load_config, parse_config
from seawall.config.models import (
    BackendSettings,
    CallableBackendSettings,
    DriftSettings,
    DriftThresholdSettings,
    MockBackendSettings,
    ModelSettings,
    OnnxBackendSettings,
    ProfileCheckSettings,
    RegistryBackendSettings,
    SklearnBackendSettings,
    TensorSpecSettings,
    TrainingSettings,
    ValidationSettings,
)
from seawall.config.registry import RegistrySettings
from seawall.config.rollouts import ReleaseSettings
from seawall.config.security import SecuritySettings
from seawall.config.server import ServerSettings
from seawall.config.traffic import ShadowSettings, TrafficSettings

__all__ = [
    "ENV_PREFIX",
    "BackendSettings",
    "CallableBackendSettings",
    "DeploymentSettings",
    "DriftSettings",
    "DriftThresholdSettings",
    "LlmModelSettings",
    "LlmSettings",
    "MockBackendSettings",
    "ModelSettings",
    "OnnxBackendSettings",
    "ProfileCheckSettings",
    "RegistryBackendSettings",
    "RegistrySettings",
    "ReleaseSettings",
    "SeawallConfig",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "ShadowSettings",
    "SklearnBackendSettings",
    "TensorSpecSettings",
    "TrafficSettings",
    "TrainingSettings",
    "ValidationSettings",
    "load_config",
    "parse_config",
]
