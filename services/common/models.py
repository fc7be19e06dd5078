"""What every service's response models share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Out(BaseModel):
    """The base of every answer's model. Extra keys pass through, so a field the service
    adds is not silently dropped on its way out."""

    model_config = ConfigDict(extra="allow")
