"""The routes, one module per resource: ``health``, ``models`` (with the raw predict
routes, one per served spec), ``assets``, ``work_orders``, ``events``, ``webhooks``."""
