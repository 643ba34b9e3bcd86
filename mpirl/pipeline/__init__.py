"""Model parallelism: a model's layers split into consecutive stages on different ranks.

``schedule`` (GPipe, 1F1B as plain data), ``partition`` (which layers go where), ``stage`` (one
slice of layers), ``executor`` (runs a schedule over the pipeline's ranks with p2p messages).
"""
from mpirl.pipeline.executor import PipelineExecutor, StepResult
from mpirl.pipeline.partition import partition
from mpirl.pipeline.schedule import Schedule, build, simulate
from mpirl.pipeline.stage import Stage

__all__ = ["PipelineExecutor", "Schedule", "Stage", "StepResult", "build", "partition", "simulate"]
