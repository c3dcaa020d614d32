"""Settings: environment variables (``COLLAB_*``), a TOML or YAML file, and defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_cache_dir, user_config_dir
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from collab.errors import ConfigurationError
from collab.trace import Price

CONFIG_ENV = "COLLAB_CONFIG"


def config_file() -> Path | None:
    """The settings file in force: ``$COLLAB_CONFIG``, else ``./collab.toml``, else the user's."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"{CONFIG_ENV} points at {path}, which is not a file",
                hint=f"create it, or unset {CONFIG_ENV}",
            )
        return path
    for candidate in (Path("collab.toml"), Path(user_config_dir("collab")) / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


class Endpoint(BaseModel):
    """One OpenAI-compatible LLM endpoint."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="for example https://api.openai.com/v1")
    model: str = Field(description="the model's name on that server")
    api_key_env: str | None = Field(
        None, description="the environment variable that holds its API key (never the key)"
    )
    price: Price | None = Field(None, description="per million tokens; default: `prices`")
    timeout_s: float | None = Field(None, gt=0, description="default: llm_timeout_s")
    max_retries: int | None = Field(None, ge=0, description="default: llm_max_retries")
    max_concurrency: int = Field(
        16, ge=1, description="requests in flight to it at once from the server; the rest wait"
    )


class ToolEntry(BaseModel):
    """A tool by import path, with how collab treats its calls."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
        description="package.module:function (a typed, documented function or a LangChain tool)",
    )
    requires_approval: bool = False
    verify: bool = False
    timeout_s: float = Field(30.0, gt=0)


class WorkflowEntry(BaseModel):
    """A model name ``collab serve`` offers, and what answers it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*$")
    kind: Literal["pair", "slm", "llm", "agent"] = Field(
        description="pair: the SLM and LLM under the policy; slm, llm: one alone; agent: the "
        "agent graph with the configured tools"
    )
    description: str = ""
    tool_choice: Literal["auto", "any"] = Field(
        "auto", description="agent: 'any' makes the first step of each turn call a tool"
    )


class Settings(BaseSettings):
    """What collab runs on. Every field can be set as ``COLLAB_<FIELD>`` or in the config file."""

    model_config = SettingsConfigDict(env_prefix="COLLAB_", extra="forbid", populate_by_name=True)

    slm: str = Field("smollm2-135m", description="catalog name or GGUF path of the local SLM")
    llm: str = Field(
        "qwen2.5-coder-1.5b",
        description="model name on the remote server; without llm_base_url, the catalog "
        "name or GGUF path of the local stand-in LLM server",
    )
    llm_base_url: str | None = Field(None, description="OpenAI-compatible base URL of the LLM")
    llm_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("llm_api_key", "COLLAB_LLM_API_KEY", "OPENAI_API_KEY"),
    )
    llm_timeout_s: float = Field(120.0, gt=0)
    llm_max_retries: int = Field(3, ge=0)
    n_ctx: int = Field(4096, ge=256, description="context length for local models")
    n_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for each local model; unset, the SLM and the stand-in "
        "LLM split the cores (collab.models.defaults.thread_budget)",
    )
    cache_dir: Path = Field(default_factory=lambda: Path(user_cache_dir("collab")))
    prices: dict[str, Price] = Field(
        default_factory=dict, description="price per model name; local models cost 0"
    )
    default_remote_price: Price = Field(
        default_factory=lambda: Price(input_per_mtok=0.5, output_per_mtok=1.5),
        description="price of a remote model missing from `prices`",
    )

    database_url: SecretStr | None = Field(
        None,
        description="postgresql://... that replicas of `collab serve` share: the agent's "
        "threads (LangGraph's checkpointer) and the daily spend; none: SQLite files in "
        "cache_dir, for one machine",
    )
    llms: list[Endpoint] = Field(
        default_factory=list,
        description="LLM endpoints tried in order, each when those before it are down; "
        "empty: `llm` at `llm_base_url`, or the local stand-in",
    )
    policy: dict[str, Any] | Path | None = Field(
        None,
        description="the policy (collab.policy.Policy's fields), or the path of a policy file "
        "(relative to this file); none: the demo's",
    )
    tools: list[ToolEntry] = Field(
        default_factory=list, description="the agent's tools; none: the demo's"
    )
    workflows: list[WorkflowEntry] = Field(
        default_factory=list,
        description="what `collab serve` offers; none: collab-auto, collab-slm, collab-llm "
        "and collab-agent",
    )

    def price_of(self, model: str, *, remote: bool) -> Price:
        if model in self.prices:
            return self.prices[model]
        return self.default_remote_price if remote else Price()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_file()
        if path is None:
            return init_settings, env_settings
        file_source: PydanticBaseSettingsSource
        if path.suffix in {".yaml", ".yml"}:
            file_source = YamlConfigSettingsSource(settings_cls, yaml_file=path)
        else:
            file_source = TomlConfigSettingsSource(settings_cls, toml_file=path)
        return init_settings, env_settings, file_source


def load_settings(**overrides: Any) -> Settings:
    """Settings from env and file, with ``overrides`` on top; a bad value names its field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = config_file()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(
            f"invalid collab settings in {where or 'the COLLAB_* environment variables'}: "
            f"{problems}",
            hint="see collab.config.Settings for the fields and their allowed values",
        ) from exc


def config_error(field: str, problem: str, hint: str) -> ConfigurationError:
    """An error in the settings' ``field`` (a dotted path, or several joined with "; " in
    ``problem`` when ``field`` is empty) that names the file it came from."""
    where = config_file()
    source = f"config file {where}" if where else "collab settings"
    return ConfigurationError(
        f"invalid {source}: {field + ': ' if field else ''}{problem}", hint=hint
    )
