"""Pure domain of grantflow: pydantic models and policy logic shared by workflows, activities and edges.

Nothing here performs I/O or imports a vendor module, so workflows may import it freely.
"""
