"""Found with autodiscover(..., module="receivers")."""

import asig_shop

asig_shop.receivers_imports += 1
