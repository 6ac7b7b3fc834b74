"""asset-twin physics: twin spec, FMUs, simulation."""
