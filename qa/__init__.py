"""Question answering over the 衡阳日报 (Hengyang Daily) archive, with exact issue citations.

Pipeline (one module per stage, imports point downward):
parse → chunk → embed → store/index → understand → retrieve → answer → api / cli / web.
"""

__version__ = "0.1.0"
