"""The decision domain, free of HTTP and SQL: the assessment (``assess``), the policy it
applies (``policy``), how a completion advances an asset's state (``completion``), the
advisories an asset keeps (``advisories``), the MES's messages as twin values
(``orders``) and the probability helpers (``stats``)."""
