from tests.jobs.cluster_fixtures import ray_cluster  # noqa: F401
from tests.jobs.moto_fixtures import moto_s3, s3_bucket  # noqa: F401
