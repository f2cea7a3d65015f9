"""A third-party task, registered through the `dcbench.tasks` entry-point group: the mean
L2 norm of a layer's activations on seeded noise images (needs no dataset)."""

from __future__ import annotations

import torch

from dcbench.tasks import Measurement, RunContext, Task, register_task


@register_task("plugin-demo", settings=("conv5", "fc7"))
class ActivationNorm(Task):
    """Mean activation norm of a layer on noise images."""

    description = "mean activation norm on seeded noise (a plugin example)"
    options = {"images": 8}

    def config(self, ctx: RunContext) -> dict:
        return {"images": 2 if ctx.quick else ctx.options.get("images", 8)}

    def run(self, trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        n = self.config(ctx)["images"]
        side = trunk.INPUT_SIZE
        x = torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(ctx.seed))
        with torch.no_grad():
            taps = trunk.extract(x.to(ctx.device), settings)
        return [Measurement(setting=s, dataset="noise", split="none", metric="act_norm",
                            value=float(taps[s].flatten(1).norm(dim=1).mean()))
                for s in settings]
