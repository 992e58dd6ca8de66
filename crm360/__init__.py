"""crm360: one trustworthy view of every customer, built from sales, service and web records."""

__version__ = "0.1.0"
