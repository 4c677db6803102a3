pub struct ServiceRouter;
