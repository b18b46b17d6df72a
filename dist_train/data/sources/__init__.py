"""Input formats the packer reads, one module each."""

from .coco import CocoSource
from .img2dataset import Img2datasetSource
from .multi30k import Multi30kSource
from .table import TableSource

ALL_CLI_SOURCES = (CocoSource, TableSource, Img2datasetSource, Multi30kSource)
