"""The web app: pages for the product's user, the operator and the community, served by ``datawheel serve``."""
