from tests.jobs.cluster_fixtures import moto_s3, ray_cluster, s3_bucket  # noqa: F401
