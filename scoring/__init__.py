"""What scores a customer, shared by training and the service: the recommenders, customer histories, item
embeddings, the model artifact format and the BLAS thread limits scoring runs under."""
